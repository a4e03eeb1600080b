"""A small weak-to-strong family matched to a real pretrained base: ``w2s zoo family smollm2``.

Why: the shipped zoo's pair was trained on lower-cased review text with its own tokenizers; on
SmolLM2's cased, fluent text its log-ratio is a poor proxy for the gold reward. In the paper the
small pair comes from the base's own family (gpt2 tuned/untuned guiding gpt2-xl). This builds
such a pair for a real base, on 2 CPU cores:

1. **prompts**: the first 2-6 words of the *training* movie-review snippets (vaderSentiment's
   human-rated snippets, original case); the held-out tenth, the demo's prompts, is never used;
2. **the base's own text**: ``samples`` continuations per prompt at temperature 1 (the base's
   real distribution), in process or through a vLLM engine (``engine=True``); cached as JSONL,
   so a rerun of the build reuses them;
3. **untuned**: a Llama-shaped model with the *base's own tokenizer* (so the pair sees exactly
   the base's tokens and EFT works), its tied embedding initialised from the top principal
   directions of the base's embedding, trained on the base's samples mixed with cased review
   snippets: sequence-level distillation by imitation (Kim & Rush 2016);
4. **tuned**: ``untuned`` after DPO on VADER-labelled pairs (best vs worst of each prompt's
   samples) of the *base's* samples (``dpo_data="base"``, the default: the text the guide
   ranks during search; its agreement with the gold scorer on held-out base samples was 0.60
   against 0.54) or of its own samples (``"own"``, as the zoo's pair was made).

Each small model must stay <= ``max_share`` (10 %) of the base's parameters, so the direction
stays weak-to-strong. The build records its config, data sizes, held-out perplexities (the
untuned model's and the base's own, on base samples of validation prompts) and the pair's
agreement with the gold scorer on those samples in ``build.json`` and each model card.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from w2s.errors import W2SError
from w2s.zoo.build import (
    _seq_logps,
    best_and_worst,
    dpo,
    eta,
    log,
    n_params,
    preference_pairs,
    save,
    train_lm,
)
from w2s.zoo.data import Corpus, cased_snippets, clean


@dataclass(frozen=True)
class FamilyConfig:
    """Everything that decides the family's weights (recorded in build.json and the cards)."""

    seed: int = 0
    base: str = "smollm2"
    """A name ``w2s zoo get`` knows, or a transformers folder."""
    prompts: int = 1600
    """Training-review openings whose base samples are distilled."""
    val_prompts: int = 128
    """Further openings whose base samples are held out (perplexity, guide agreement)."""
    samples: int = 4
    max_new: int = 48
    temperature: float = 1.0
    engine: bool = False
    """Sample the base through vLLM (``make engine``); False (default): in process, which
    measured faster on 2 CPU cores (386 vs 204 tokens/s, SmolLM2, 512 rows of 48 tokens)."""
    corpus_share: float = 0.25
    """Cased review snippets mixed in, as a share of the training sequences."""
    hidden: int = 192
    layers: int = 6
    heads: int = 3
    epochs: float = 2.0
    batch: int = 32
    lr: float = 2e-3
    pca_init: bool = True
    max_share: float = 0.10
    dpo_data: str = "base"
    """Whose samples the preference pairs are made of: ``own`` (the untuned model's, on
    ``dpo_prompts`` further openings, as the zoo's pair was made) or ``base`` (the base's
    samples already drawn for distillation: the text the guide will rank during search)."""
    dpo_prompts: int = 1600
    dpo_samples: int = 4
    dpo_max_new: int = 48
    dpo_beta: float = 0.1
    dpo_lr: float = 1e-4
    dpo_epochs: int = 3

    def __post_init__(self) -> None:
        for name in ("prompts", "val_prompts", "samples", "max_new", "hidden", "layers",
                     "heads", "batch", "dpo_prompts", "dpo_samples", "dpo_max_new",
                     "dpo_epochs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise W2SError(f"{name} must be an integer >= 1, got {v!r}")
        if self.hidden % self.heads:
            raise W2SError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        for name in ("temperature", "epochs", "lr", "dpo_beta", "dpo_lr", "max_share"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise W2SError(f"{name} must be a finite number > 0, got {v!r}")
        if self.dpo_data not in ("own", "base"):
            raise W2SError(f"dpo_data must be 'own' or 'base', got {self.dpo_data!r}")
        if not 0 <= self.corpus_share < 1:
            raise W2SError(f"corpus_share must be in [0, 1), got {self.corpus_share!r}")


# --------------------------------------------------------------------- prompts
def openings(texts: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """The first 2-6 words of ``n`` distinct texts of at least 6 words (the paper's IMDB-style
    prompts), in the texts' own case."""
    pool = [t for t in texts if len(t.split()) >= 6]
    out = []
    for t in rng.sample(pool, min(n, len(pool))):
        out.append(" ".join(t.split()[: rng.randint(2, 6)]))
    return out


def heldout_prompts(corpus: Corpus) -> list[str]:
    """The demo's held-out prompts in their original case: the first five words of the same
    held-out snippets (same order) whose lower-cased openings are the zoo's ``prompts.jsonl``."""
    ordered = sorted(corpus.heldout, key=lambda t: (clean(t), t))
    return [" ".join(t.split()[:5]) for t in ordered[1::2] if len(t.split()) >= 8]


# ---------------------------------------------------------------- base samples
def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def base_samples(backend: Any, prompts: Sequence[str], cfg: FamilyConfig, path: Path,
                 *, seed: int, chunk: int = 32) -> list[dict]:
    """``cfg.samples`` base continuations per prompt, appended to ``path`` chunk by chunk (a
    killed build resumes at the next chunk). Rows: prompt, response, finished."""
    import w2s

    done: list[dict] = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line: redo its chunk
    have = {r["prompt"] for r in done}
    todo = [p for p in dict.fromkeys(prompts) if p not in have]
    sp = w2s.SamplingParams(max_new_tokens=cfg.max_new, temperature=cfg.temperature, seed=seed)
    t0 = time.time()
    if todo:
        log(f"base samples: {len(todo)} prompts x {cfg.samples} to sample"
            + (f" ({len(have)} done earlier)" if have else ""))
    with path.open("a") as f:
        for i in range(0, len(todo), chunk):
            part = todo[i: i + chunk]
            rows = [{"prompt": r.prompt, "response": c.text, "finished": c.finished}
                    for r in w2s.sample(backend, None, part, sp, n=cfg.samples)
                    for c in r.candidates]
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            done += rows
            rate = (i + len(part)) * cfg.samples * cfg.max_new / (time.time() - t0)
            log(f"base samples: {eta(i + len(part), len(todo), t0, 'prompts')} "
                f"(~{rate:.0f} tok/s)")
    keep = set(prompts)
    return [r for r in done if r["prompt"] in keep]


# ---------------------------------------------------------------------- student
def student(base_folder: Path, cfg: FamilyConfig):  # noqa: ANN201
    """The small Llama-shaped model on the base's vocabulary; with ``pca_init``, its tied
    embedding is the base's embedding projected on its top ``hidden`` principal directions
    (keeps the base's token geometry, so distillation starts from the right word classes;
    the embedding is most of the small model's parameters)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    bc = AutoConfig.from_pretrained(base_folder)
    rope = getattr(bc, "rope_parameters", None)  # transformers 5; older ones: rope_theta
    rope_kw = {"rope_parameters": dict(rope)} if rope else {
        "rope_theta": getattr(bc, "rope_theta", 10000.0)}
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=bc.vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.hidden * 3,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=min(bc.max_position_embeddings, 2048), **rope_kw,
        bos_token_id=bc.bos_token_id, eos_token_id=bc.eos_token_id,
        pad_token_id=bc.pad_token_id, tie_word_embeddings=True))
    if cfg.pca_init:
        weights = {}
        for f in sorted(base_folder.glob("*.safetensors")):
            weights.update(load_file(f))
        name = next(k for k in weights if k.endswith("embed_tokens.weight"))
        emb = weights[name].float()  # (V, H_base)
        _, _, vh = torch.linalg.svd(emb, full_matrices=False)
        proj = emb @ vh[: cfg.hidden].T  # (V, hidden)
        # the base's scale would give logits of ~25 nats at the start: keep the geometry, take
        # the usual initial scale (std 0.02)
        proj = proj * (model.config.initializer_range / proj.std())
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(proj)
    return model


def training_sequences(tok, samples: Sequence[dict], texts: Sequence[str],  # noqa: ANN001
                       cfg: FamilyConfig, rng: random.Random) -> list[list[int]]:
    """Token ids of the training sequences: each base sample as the pair will score it
    (prompt tokens as the tokenizer adds them, the response without special tokens, EOS when
    it ended), plus cased snippets making up ``corpus_share`` of the sequences."""
    prompts = sorted({s["prompt"] for s in samples})
    p_ids = dict(zip(prompts, tok(prompts, add_special_tokens=True)["input_ids"]))
    r_ids = tok([s["response"] for s in samples], add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    seqs = [p_ids[s["prompt"]] + list(r) + ([eos] if s["finished"] and eos is not None else [])
            for s, r in zip(samples, r_ids)]
    n_corpus = int(len(seqs) * cfg.corpus_share / (1 - cfg.corpus_share))
    docs = rng.sample(list(texts), min(n_corpus, len(texts)))
    if docs:
        seqs += [ids[:128] for ids in tok(docs, add_special_tokens=True)["input_ids"]]
    return [s for s in seqs if len(s) > 1]


def distill(model, tok, seqs: list[list[int]], cfg: FamilyConfig) -> dict:  # noqa: ANN001
    """Next-token cross-entropy on ``seqs``: the zoo's training loop, with a shorter warm-up."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return train_lm(model, seqs, pad, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr,
                    seed=cfg.seed, warm_cap=100, name="untuned")


def base_pairs(tok, samples: Sequence[dict], gold: Callable[[list[str]], list[float]],  # noqa: ANN001
               margin: float = 0.1) -> list[dict]:
    """Preference pairs of the base's samples: per prompt, the sample gold likes most over the
    one it likes least (when they are ``margin`` apart), in the small model's tokens."""
    by: dict[str, list[dict]] = {}
    for s in samples:
        if s["response"].strip():
            by.setdefault(s["prompt"], []).append(s)
    pairs = []
    eos = tok.eos_token_id
    for prompt, group in by.items():
        best = best_and_worst([s["response"] for s in group], gold, margin)
        if best is not None:
            (hi, lo), scores = best
            ids = [tok(group[i]["response"], add_special_tokens=False)["input_ids"]
                   + ([eos] if group[i]["finished"] and eos is not None else []) for i in (hi, lo)]
            pairs.append({"prompt": prompt, "chosen": ids[0], "rejected": ids[1],
                          "chosen_gold": scores[hi], "rejected_gold": scores[lo]})
    return pairs


# ------------------------------------------------------------------ diagnostics
@torch.inference_mode()
def response_perplexity(model, tok, samples: Sequence[dict]) -> float:  # noqa: ANN001
    """exp(mean negative log-likelihood per response token) of ``samples`` under ``model``."""
    p_ids = tok([s["prompt"] for s in samples], add_special_tokens=True)["input_ids"]
    r_ids = tok([s["response"] for s in samples], add_special_tokens=False)["input_ids"]
    nll = -sum(float(_seq_logps(model, tok, p_ids[i: i + 64], r_ids[i: i + 64]).sum())
               for i in range(0, len(samples), 64))
    return math.exp(nll / max(1, sum(map(len, r_ids))))


def guide_agreement(guide: Any, samples: Sequence[dict],
                    gold: Callable[[list[str]], list[float]]) -> dict:
    """How well ``guide`` ranks base samples as the gold scorer does (see
    :func:`ranking_agreement`)."""
    scores = [float(x) for x in guide.score([s["prompt"] for s in samples],
                                            [s["response"] for s in samples],
                                            [bool(s["finished"]) for s in samples])]
    return ranking_agreement(scores, gold([s["response"] for s in samples]),
                             [s["prompt"] for s in samples])


def ranking_agreement(scores: Sequence[float], golds: Sequence[float], groups: Sequence[Any],
                      margin: float = 0.1) -> dict:
    """Spearman's rank correlation of ``scores`` with ``golds`` over all items, and the share
    of same-group pairs (gold apart by >= ``margin``) that the scores order as gold does (a tie
    counts as wrong): the choice Best-of-N and CBS actually make among one prompt's samples."""
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    right = total = 0
    for idx in by_group.values():
        for a in idx:
            for b in idx:
                if golds[a] - golds[b] >= margin:
                    total += 1
                    right += scores[a] > scores[b]
    return {"spearman": round(spearman(scores, golds), 3),
            "pairwise accuracy": round(right / total, 3) if total else None,
            "pairs": total}


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx and vy else 0.0


# ------------------------------------------------------------------------ build
def family_dir(name: str = "smollm2") -> Path:
    from w2s.zoo.pretrained import cache_dir

    return cache_dir() / f"{name}-family"


def base_folder_of(cfg: FamilyConfig) -> Path:
    folder = Path(cfg.base).expanduser()
    if (folder / "config.json").is_file():
        return folder
    from w2s.zoo.pretrained import get_pretrained

    return get_pretrained(cfg.base)


def _sampler(cfg: FamilyConfig, folder: Path):  # noqa: ANN202
    """A context manager yielding the base as a w2s backend: a vLLM engine or in process."""
    import contextlib

    @contextlib.contextmanager
    def engine():  # noqa: ANN202
        from w2s.models.openai_api import OpenAIBackend
        from w2s.vllm_server import vllm_server

        with vllm_server(folder, "base", max_model_len=256, kv_cache_bytes=1024 * 2**20,
                         timeout=600) as url:
            yield OpenAIBackend(url, "base", max_concurrency=64, batch_size=512)

    @contextlib.contextmanager
    def in_process():  # noqa: ANN202
        import w2s

        yield w2s.HFModel.load(str(folder), batch_size=256)

    return engine() if cfg.engine else in_process()


FOOTER = ("Rebuild: `w2s zoo family` (seeded; see `src/w2s/zoo/family.py`). Data: the base's own "
          "samples on training movie-review openings, and cased movie-review snippets from the "
          "vaderSentiment 3.3.2 source distribution (MIT).")


def build_family(out: Path | None = None, *, cfg: FamilyConfig | None = None,
                 cache: Path | None = None, corpus: Corpus | None = None,
                 gold: Callable[[list[str]], list[float]] | None = None) -> dict:
    """Build (or finish building) the family into ``out``: untuned/, tuned/, build.json.
    ``corpus`` (default: the cased review snippets) gives the prompts and mixed-in text;
    ``gold`` (default: VADER) labels the preference pairs."""
    from transformers import AutoTokenizer

    from w2s.tasks.gold import vader
    from w2s.zoo.record import build_environment

    gold = gold or vader
    cfg = cfg or FamilyConfig()
    out = out or family_dir(cfg.base if "/" not in cfg.base else Path(cfg.base).name)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    folder = base_folder_of(cfg)  # an unknown base fails here, before any download
    corpus = corpus or cased_snippets(cache or Path.home() / ".cache" / "w2s" / "zoo-data")
    rng = random.Random(cfg.seed)
    train_prompts = openings(corpus.train, cfg.prompts + cfg.val_prompts + cfg.dpo_prompts, rng)
    val = train_prompts[cfg.prompts: cfg.prompts + cfg.val_prompts]
    dpo_prompts = train_prompts[cfg.prompts + cfg.val_prompts:]
    train_prompts = train_prompts[: cfg.prompts]
    tok = AutoTokenizer.from_pretrained(folder)
    sample_key = _key(str(folder), cfg.seed, cfg.samples, cfg.max_new, cfg.temperature)
    t0 = time.time()
    with _sampler(cfg, folder) as backend:
        samples = base_samples(backend, train_prompts + val, cfg,
                               work / f"base-samples-{sample_key}.jsonl", seed=cfg.seed)
    sample_minutes = round((time.time() - t0) / 60, 1)
    val_set = set(val)
    train_samples = [s for s in samples if s["prompt"] not in val_set]
    val_samples = [s for s in samples if s["prompt"] in val_set]
    log(f"{len(train_samples)} base samples to distill, {len(val_samples)} held out")
    card_u = _untuned(out, folder, tok, cfg, sample_key, train_samples, val_samples,
                      len(train_prompts), corpus, rng)
    card_t = _tuned(out, tok, cfg, card_u, train_samples, val_samples, dpo_prompts,
                    len(train_prompts), gold)
    summary = {"config": asdict(cfg), "gold": gold.__name__, "base folder": str(folder),
               "sampling minutes": sample_minutes,
               "total minutes": round((time.time() - t_start) / 60, 1),
               "environment": build_environment(t_start),
               "models": {"untuned": card_u, "tuned": card_t},
               "agreement with gold on held-out base samples": _agreements(out, val_samples,
                                                                           gold)}
    (out / "build.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"family written to {out} in {summary['total minutes']} minutes")
    return summary


def _untuned(out: Path, folder: Path, tok: Any, cfg: FamilyConfig, sample_key: str,
             train_samples: list[dict], val_samples: list[dict], n_prompts: int,
             corpus: Corpus, rng: random.Random) -> dict:
    """Distil the untuned model from the base's samples (or reuse one distilled with the same
    settings: a stamp holds their key); returns its model card."""
    from transformers import AutoModelForCausalLM

    untuned_key = _key(sample_key, {k: v for k, v in asdict(cfg).items()
                                    if not k.startswith("dpo_")})
    stamp = out / "untuned" / "w2s-build-key"
    if stamp.is_file() and stamp.read_text() == untuned_key:
        # the same distillation settings: only the tuned model is built again
        log(f"untuned: reusing {out / 'untuned'} (same settings)")
        return json.loads((out / "untuned" / "card.json").read_text())
    base_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base_params = n_params(base_model)
    model = student(folder, cfg)
    size = n_params(model)
    if size > cfg.max_share * base_params:
        raise W2SError(f"the small model has {size / 1e6:.1f} M parameters, over "
                       f"{cfg.max_share:.0%} of the base's {base_params / 1e6:.1f} M")
    seqs = training_sequences(tok, train_samples, corpus.train, cfg, rng)
    log(f"untuned: {size / 1e6:.2f} M parameters ({size / base_params:.1%} of the base), "
        f"{len(seqs)} sequences, {sum(map(len, seqs))} tokens")
    stats = distill(model, tok, seqs, cfg)
    ppl = response_perplexity(model, tok, val_samples)
    base_ppl = response_perplexity(base_model, tok, val_samples)
    del base_model
    common = {"base": str(cfg.base), "base parameters": base_params, "architecture":
              type(model).__name__, "parameters": size, "share of the base": round(size / base_params, 4),
              "vocabulary": model.config.vocab_size, "tokenizer": "the base's own"}
    card_u = {"role": "untuned", "what": f"Distilled from {cfg.base}: trained on its own samples "
              "(temperature 1) on training movie-review openings, mixed with cased review "
              "snippets; embedding initialised from the base's top principal directions.",
              **common, "base samples": len(train_samples),
              "prompts": f"{n_prompts} training-review openings (2-6 words)",
              "samples per prompt": cfg.samples, "max new tokens": cfg.max_new,
              "corpus share": cfg.corpus_share, "epochs": cfg.epochs, "lr": cfg.lr, **stats,
              "seed": cfg.seed,
              "perplexity on held-out base samples": round(ppl, 2),
              "the base's own perplexity on them": round(base_ppl, 2)}
    save(model, tok, out / "untuned", card_u, footer=FOOTER)
    log(f"untuned: held-out perplexity on base samples {ppl:.2f} (the base's own: {base_ppl:.2f})")
    (out / "untuned" / "card.json").write_text(json.dumps(card_u, indent=1) + "\n")
    stamp.write_text(untuned_key)
    return card_u


def _tuned(out: Path, tok: Any, cfg: FamilyConfig, card_u: dict, train_samples: list[dict],
           val_samples: list[dict], dpo_prompts: list[str], n_prompts: int,
           gold: Callable[[list[str]], list[float]]) -> dict:
    """DPO of the untuned model on gold-labelled preference pairs; returns its model card."""
    from transformers import AutoModelForCausalLM

    common = {k: card_u[k] for k in ("base", "base parameters", "architecture", "parameters",
                                     "share of the base", "vocabulary", "tokenizer")}
    if cfg.dpo_data == "own":
        pairs = preference_pairs(out / "untuned", dpo_prompts, cfg, gold)
    else:
        pairs = base_pairs(tok, train_samples, gold)
    gap = sum(p["chosen_gold"] - p["rejected_gold"] for p in pairs) / max(1, len(pairs))
    log(f"tuned: {len(pairs)} preference pairs (mean gold gap {gap:.2f})")
    torch.manual_seed(cfg.seed)
    policy = AutoModelForCausalLM.from_pretrained(out / "untuned", dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(out / "untuned", dtype=torch.float32)
    dstats = dpo(policy, ref, tok, pairs, cfg, "tuned")
    whose = "its own samples" if cfg.dpo_data == "own" else "the base's samples"
    card_t = {"role": "tuned", "what": f"`untuned` after DPO on preference pairs of {whose} "
              f"labelled by the gold scorer ({gold.__name__}): the best of each prompt's "
              "samples preferred to the worst.", "DPO data": cfg.dpo_data,
              **common, "DPO beta": cfg.dpo_beta, "DPO lr": cfg.dpo_lr,
              "DPO epochs": cfg.dpo_epochs, "preference pairs": len(pairs),
              "prompts": f"{len(dpo_prompts) if cfg.dpo_data == 'own' else n_prompts}"
                         " training-review openings (2-6 words)",
              "samples per prompt": cfg.dpo_samples if cfg.dpo_data == "own" else cfg.samples,
              "seed": cfg.seed,
              "final DPO loss": round(dstats["loss"], 4),
              "implicit-reward accuracy": round(dstats["reward_accuracy"], 3),
              "perplexity on held-out base samples": round(response_perplexity(policy, tok,
                                                                                val_samples), 2)}
    save(policy, tok, out / "tuned", card_t, footer=FOOTER)
    return card_t


def _agreements(out: Path, val_samples: list[dict],
                gold: Callable[[list[str]], list[float]]) -> dict:
    """Each available pair's agreement with the gold scorer on the held-out base samples."""
    import w2s
    from w2s.zoo import ZOO_DIR

    agreement = {}
    for label, (t, u) in {"this family's pair": (out / "tuned", out / "untuned"),
                          "the zoo's cross-vocabulary pair": (ZOO_DIR / "xtuned",
                                                              ZOO_DIR / "xuntuned")}.items():
        if (t / "config.json").is_file() and (u / "config.json").is_file():
            agreement[label] = guide_agreement(w2s.PairGuide.load(str(t), str(u)),
                                               val_samples, gold)
            log(f"{label} vs gold on held-out base samples: {agreement[label]}")
    return agreement

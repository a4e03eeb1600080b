"""Random-initialised tiny models with real trained tokenizers, saved as ordinary
``transformers`` folders, so tests and the demo exercise the real ``from_pretrained`` path
without a model hub.

``build_tiny_set(root)`` writes:
  base/        Llama-shaped, tokenizer A (byte-level BPE, ~400 tokens)
  tuned/       Llama-shaped, smaller, tokenizer A
  untuned/     Llama-shaped, smaller, tokenizer A (another seed)
  xtuned/      GPT-2-shaped, tokenizer B (a different vocabulary, ~300 tokens, whose special
               tokens sit at other ids: pad/bos/eos are 0/1/2 in A and 4/5/3 in B, so a guide
               that borrowed the base's special ids would score the wrong token)
  xuntuned/    GPT-2-shaped, tokenizer B
  reward/      Llama sequence classifier (2 labels), tokenizer A

``build_ending_set(root)`` writes a base/tuned/untuned family (GPT-2-shaped, tokenizer A) whose
EOS logit is raised by a constant, so that most responses end by EOS within a few tokens: the
exact equivalences then also cover how finished candidates are scored and how decoding stops.
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = """\
The movie was a delight from start to finish, with a warm story and great acting.
I thought the film was boring and far too long; the plot made no sense at all.
A wonderful cast, a clever script and a score that stays with you after the credits.
The worst picture of the year: dull, loud and badly edited.
It is a charming, funny and moving story about a family that learns to love again.
The director wastes a good idea on flat characters and a predictable ending.
One of the best performances I have seen, honest and full of life.
Nothing works here, not the jokes, not the action and not the romance.
An excellent, beautiful film that I would happily watch again tomorrow.
I was disappointed by the weak dialogue and the terrible special effects.
"""

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>"]
# the same special tokens in another order: pad 4, bos 5, eos 3
SPECIAL_B = ["<|user|>", "<|assistant|>", "<|system|>", "<|eos|>", "<|pad|>", "<|bos|>"]


def build_tokenizer(vocab_size: int, corpus: str = CORPUS, special: list[str] = SPECIAL):  # noqa: ANN201
    """A byte-level BPE tokenizer trained on ``corpus``, wrapped as a transformers tokenizer;
    ``special`` tokens take the first ids, in that order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus.splitlines(), trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>",
                                   additional_special_tokens=[t for t in special if t not in
                                                              ("<|pad|>", "<|bos|>", "<|eos|>")])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _llama_config(tokenizer, hidden: int, layers: int, max_pos: int = 256):  # noqa: ANN001, ANN202
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=max_pos, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       tie_word_embeddings=True, initializer_range=0.5)


def _gpt2_config(tokenizer, hidden: int, layers: int, max_pos: int = 256):  # noqa: ANN001, ANN202
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(tokenizer), n_embd=hidden, n_layer=layers, n_head=4,
                      n_positions=max_pos, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      initializer_range=0.5)


def save_model(model, tokenizer, path: Path) -> Path:  # noqa: ANN001
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_set(root: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Write the tiny model set under ``root``; returns role -> folder."""
    from transformers import AutoModelForCausalLM, LlamaForSequenceClassification

    root = Path(root)
    tok_a = build_tokenizer(400)
    tok_b = build_tokenizer(300, CORPUS.lower(), SPECIAL_B)
    specs = {
        "base": (_llama_config(tok_a, 64, 2), tok_a, seed),
        "tuned": (_llama_config(tok_a, 32, 2), tok_a, seed + 1),
        "untuned": (_llama_config(tok_a, 32, 2), tok_a, seed + 2),
        "xtuned": (_gpt2_config(tok_b, 32, 2), tok_b, seed + 3),
        "xuntuned": (_gpt2_config(tok_b, 32, 2), tok_b, seed + 4),
    }
    out: dict[str, Path] = {}
    for role, (cfg, tok, s) in specs.items():
        torch.manual_seed(s)
        out[role] = save_model(AutoModelForCausalLM.from_config(cfg), tok, root / role)
    torch.manual_seed(seed + 5)
    cfg = _llama_config(tok_a, 32, 1)
    cfg.num_labels = 2
    out["reward"] = save_model(LlamaForSequenceClassification(cfg), tok_a, root / "reward")
    return out


def boost_eos(model, boost: float) -> None:  # noqa: ANN001
    """Give a GPT-2 model's EOS logit a constant ``+boost`` at every position.

    GPT-2's final LayerNorm has a bias and its LM head is the (tied) token embedding: hidden
    unit 0 is made the constant 1 (LayerNorm weight 0, bias 1) and only EOS's embedding reads
    it (weight ``boost``; every other token's weight on it is 0)."""
    with torch.no_grad():
        wte, ln_f = model.transformer.wte.weight, model.transformer.ln_f
        eos = model.config.eos_token_id
        wte[:, 0] = 0.0
        wte[eos, 0] = boost
        ln_f.weight[0], ln_f.bias[0] = 0.0, 1.0


def build_ending_set(root: str | Path, *, seed: int = 10,
                     boosts: tuple[float, float, float] = (6.0, 10.0, 5.0)) -> dict[str, Path]:
    """Write base/tuned/untuned (GPT-2-shaped, one vocabulary) with boosted EOS logits under
    ``root`` (see :func:`boost_eos`); returns role -> folder."""
    from transformers import AutoModelForCausalLM

    root = Path(root)
    tok = build_tokenizer(400)
    out: dict[str, Path] = {}
    for n, (role, hidden, boost) in enumerate(zip(("base", "tuned", "untuned"), (64, 32, 32),
                                                  boosts)):
        torch.manual_seed(seed + n)
        model = AutoModelForCausalLM.from_config(_gpt2_config(tok, hidden, 2))
        boost_eos(model, boost)
        out[role] = save_model(model, tok, root / role)
    return out

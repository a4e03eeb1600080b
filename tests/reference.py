"""Independent references: plain ``transformers`` forward passes and float64 numpy/torch maths,
with no w2s code on the reference side (a reference that calls the code under test checks
nothing)."""

from __future__ import annotations

from functools import cache

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@cache
def load(path: str):  # noqa: ANN201
    """(tokenizer, model) of a folder, loaded once per test session."""
    tok = AutoTokenizer.from_pretrained(path)
    return tok, AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def prompt_ids(path: str, prompt: str) -> list[int]:
    return list(load(path)[0](prompt)["input_ids"])


def next_token_logits(path: str, prompt: str, response_ids: list[int]) -> torch.Tensor:
    """``(len(response_ids) + 1, V)`` float64 logits: position t predicts response token t
    (the last row predicts the token after the response)."""
    tok, model = load(path)
    p = prompt_ids(path, prompt)
    with torch.no_grad():
        logits = model(torch.tensor([p + list(response_ids)])).logits[0].double()
    return logits[len(p) - 1:, : len(tok)]


def logprob_sum(path: str, prompt: str, response_ids: list[int]) -> float:
    """sum_t log p(response_t | prompt, response_<t) under the model at ``path``."""
    logp = next_token_logits(path, prompt, response_ids).log_softmax(-1)
    return float(sum(logp[t, x] for t, x in enumerate(response_ids)))


def pair_score(tuned: str, untuned: str, prompt: str, text: str, ended: bool) -> float:
    """The pair's reward: each model tokenizes the text its own way, and a complete response
    also scores that model's own EOS token."""
    total = 0.0
    for path, sign in ((tuned, 1.0), (untuned, -1.0)):
        tok = load(path)[0]
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        total += sign * logprob_sum(path, prompt, ids + ([tok.eos_token_id] if ended else []))
    return total


def kl_sum(q_logits: torch.Tensor, p_logits: torch.Tensor, temperature: float) -> float:
    """sum over rows of KL(q || p) between the temperature-scaled softmaxes of ``(T, V)`` (or
    ``(V,)``) logits, in float64."""
    q = (q_logits.double() / temperature).log_softmax(-1)
    p = (p_logits.double() / temperature).log_softmax(-1)
    return float((q.exp() * (q - p)).sum())

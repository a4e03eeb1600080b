"""Next-token logit maths: one sampled token per row, the KL between two next-token
distributions, and the vocabulary check token-level arithmetic needs.

Temperature, then top-k, then top-p (the order ``transformers`` uses), then inverse-CDF sampling
with the counter-based uniforms of :mod:`w2s.rng`. Every token-level path (plain sampling, EFT)
goes through :func:`choose`, so a distribution that is equal gives a token that is equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch

from w2s.params import SamplingParams
from w2s.rng import sample_from_probs


def filtered_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Normalised probabilities ``(B, V)`` after temperature, top-k and top-p (filtered: 0)."""
    logits = logits.float() / max(temperature, 1e-8)
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass strictly before it already reaches top_p (keeps >= 1 token)
        before = sorted_p.cumsum(-1) - sorted_p
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def choose(logits: torch.Tensor, sampling: SamplingParams, u: torch.Tensor) -> torch.Tensor:
    """One token per row of ``logits (B, V)``; greedy when temperature is 0. Returns ``(B,)``."""
    if sampling.temperature == 0:
        return logits.argmax(-1)
    probs = filtered_probs(logits, sampling.temperature, sampling.top_k, sampling.top_p)
    return sample_from_probs(probs, u)


def token_kl(fused_logp: torch.Tensor, base_logits: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """``(B,)`` KL(fused ‖ base) of the next-token distributions at ``temperature``.

    Both sides are the temperature-scaled distributions before top-k/top-p truncation, so the
    KL is finite and base sampling has KL exactly 0; summed along a sampled path it is an
    unbiased estimate of the sequence-level KL of the fused sampler from base sampling.
    """
    if temperature <= 0:
        return torch.zeros(fused_logp.shape[0], dtype=torch.float64)
    q = (fused_logp.double() / temperature).log_softmax(-1)
    p = (base_logits.double() / temperature).log_softmax(-1)
    return (q.exp() * (q - p)).sum(-1)


class HasVocabulary(Protocol):
    """Anything with a name and a token -> id map (a :class:`~w2s.models.base.LogitsBackend`)."""

    name: str

    @property
    def vocabulary(self) -> Mapping[str, int]: ...


def same_vocabulary(a: HasVocabulary, b: HasVocabulary) -> bool:
    """Whether token id ``i`` means the same token to ``a`` and ``b`` (per-id arithmetic is
    meaningful only then)."""
    return a is b or a.vocabulary == b.vocabulary

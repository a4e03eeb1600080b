"""Turning next-token logits into one sampled token per row.

Temperature, then top-k, then top-p (the order ``transformers`` uses), then inverse-CDF sampling
with the counter-based uniforms of :mod:`w2s.rng`. Every token-level path (plain sampling, EFT)
goes through :func:`choose`, so a distribution that is equal gives a token that is equal.
"""

from __future__ import annotations

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

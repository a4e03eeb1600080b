"""Dynamic Logit Fusion (Fan et al. 2024, "On Giant's Shoulders"): EFT whose experts'
strengths are chosen afresh at every step: alpha in [0, alpha_max]^n minimising

    sum_i ( KL(p_alpha || pi_base) - KL(pi_tuned_i || pi_untuned) )^2,
    p_alpha ∝ pi_base * prod_i (pi_tuned_i / pi_untuned)^alpha_i.

KL(p_alpha || pi_base) only depends on alpha through one number once a direction is fixed, so
the minimisers form a surface: every alpha whose KL equals the mean of the experts' KLs. We take
the one along the direction of the weights (alpha = s * w, the weights say which trade-off, DLF
says how far): KL(p_{s w} || pi_base) grows with s (its derivative is s Var_p(w . shift) >= 0),
so a vectorised bisection on s finds it, clipped to [0, alpha_max / max w]. With one expert this
is the paper's 1-D search exactly. Static alpha is multi-guide EFT (:mod:`w2s.decoding.experts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from w2s.decoding.common import knobs, sampling_of
from w2s.decoding.experts import Experts, experts_of
from w2s.decoding.token_level import decode_fused
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import DLFParams, SamplingParams
from w2s.result import Result

BISECTION_STEPS = 40
"""Halvings of [0, s_max]: 2^-40 of alpha_max, below float32 resolution of the logits."""


def tilted_kl(base: torch.Tensor, shift: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``(B,)`` KL(p_s || base) with p_s ∝ base * exp(s * shift), from normalised ``base``
    log-probabilities ``(B, V)``, ``shift`` ``(B, V)`` and per-row ``s`` ``(B,)``."""
    logq = (base + s[:, None] * shift).log_softmax(-1)
    return (logq.exp() * (logq - base)).sum(-1)


def expert_kl(tuned: torch.Tensor, untuned: torch.Tensor) -> torch.Tensor:
    """``(B,)`` KL(pi_tuned || pi_untuned) from normalised log-probabilities."""
    return (tuned.exp() * (tuned - untuned)).sum(-1)


def dlf_scale(base: torch.Tensor, shift: torch.Tensor, target: torch.Tensor, s_max: float,
              steps: int = BISECTION_STEPS) -> torch.Tensor:
    """Per row, the ``s`` in [0, s_max] with KL(p_s || base) = ``target`` (bisection; KL grows
    with s): 0 where the target is 0, ``s_max`` where even it falls short."""
    base, shift, target = base.double(), shift.double(), target.double()
    lo = torch.zeros(base.shape[0], dtype=torch.float64)
    hi = torch.full_like(lo, float(s_max))
    short = tilted_kl(base, shift, hi) <= target
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = tilted_kl(base, shift, mid) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    s = torch.where(short, torch.full_like(lo, float(s_max)), (lo + hi) / 2)
    return torch.where(target <= 0, torch.zeros_like(s), s)  # no shift wanted (or possible)


class DLFRule:
    """Dynamic Logit Fusion: ``base + sum_i alpha_i (tuned_i - untuned_i)`` with alpha chosen
    per row and per step (see the module docstring); ``alphas`` keeps each step's ``(B, n)``."""

    def __init__(self, experts: Sequence[tuple[float, Any, Any]], alpha_max: float) -> None:
        self.experts, self.alpha_max = Experts(experts), alpha_max
        w = self.experts.weights
        if float(w.max()) <= 0:
            raise W2SError("dlf needs at least one expert with a weight > 0")
        self.direction = w / w.max()  # the largest weight reaches alpha_max first
        self.alphas: list[torch.Tensor] = []

    def models(self) -> list[tuple[str, Any]]:
        return self.experts.distinct

    def __call__(self, base: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        shifts = [x.double() for x in self.experts.shifts(guides)]
        d = self.direction.to(base.device)
        shift = sum(di * x for di, x in zip(d.tolist(), shifts))
        targets = torch.stack([expert_kl(guides[t].double(), guides[u].double())
                               for t, u in self.experts.index], -1)  # (B, n)
        s = dlf_scale(base, shift, targets.mean(-1), self.alpha_max)
        self.alphas.append((s[:, None] * d[None, :].double()).cpu())
        return (base.double() + s[:, None] * shift).to(base.dtype)


def dlf(backend: Backend, guide: Guide | None, prompts: Sequence[str],
        dlf_params: DLFParams | None = None, sampling: SamplingParams | None = None
        ) -> list[Result]:
    """Sample with Dynamic Logit Fusion. ``Result.stats`` holds the exact ``kl`` and the
    strengths chosen, averaged over the response's tokens: ``alpha_1`` .. ``alpha_n`` per
    expert and their sum ``alpha_mean`` (``DLFRule.alphas`` has every step's, for plots)."""
    dlf_params = knobs(dlf_params, DLFParams, "dlf")
    sampling = sampling_of(sampling)
    rule = DLFRule(experts_of(guide, "dlf", arms=False), dlf_params.alpha_max)
    results = decode_fused(backend, guide, prompts, rule, sampling, method="dlf",
                           params=dlf_params.to_dict())
    if rule.alphas:
        alphas = torch.stack(rule.alphas)  # (steps, B, n)
        for i, r in enumerate(results):
            n = max(1, len(r.token_ids))
            per_expert = alphas[:n, i, :].mean(0)
            r.stats["alpha_mean"] = float(per_expert.sum())
            for j, a in enumerate(per_expert.tolist()):
                r.stats[f"alpha_{j + 1}"] = a
    return results

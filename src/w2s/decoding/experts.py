"""Many experts, one base, at the token level: the experts of a guide, and multi-guide EFT.

An *expert* is a tuned/untuned pair (:class:`~w2s.guides.PairGuide`); a guide of several is a
weighted sum of pairs (``0.7 * pair_a + 0.3 * pair_b``; on the CLI ``--tuned A --tuned B
--untuned U --weights 0.7,0.3``). Experts tuned from one small model share it: it is stepped
once per token, not once per expert.

Multi-guide EFT (GenARM-style trade-offs set per request; one expert with weight 1 is EFT)::

    log p(y_t) = log pi_base + beta * sum_i w_i (log pi_tuned_i - log pi_untuned_i)

An expert may also be one autoregressive reward LM (GenARM, :class:`~w2s.guides.ARMGuide`),
whose term is ``w_i log pi_arm_i``: GenARM's ``log pi_base + (1/beta) sum_i w_i log pi_arm_i``
is this rule with w2s's ``beta`` set to GenARM's ``1/beta``. Dynamic Logit Fusion, which sets
the experts' strengths per token, is :mod:`w2s.decoding.dlf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from w2s.decoding.token_level import decode_fused
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import SamplingParams
from w2s.result import Result


def _expert(w: float, g: Guide) -> tuple[float, Any, Any] | None:
    e = g.expert()  # a pair: (tuned, untuned); an ARM: (arm, None); else None
    return (w, *e) if e is not None else None


def experts_of(guide: Guide | None, method: str, *, arms: bool = True
               ) -> list[tuple[float, Any, Any]]:
    """``(weight, tuned, untuned)`` per expert of a pair, an autoregressive reward LM
    (``untuned`` None) or a weighted sum of them."""
    terms = guide.parts() if isinstance(guide, Guide) else []
    out = [_expert(w, g) for w, g in terms]
    if out and all(e is not None for e in out) and (arms or all(e[2] is not None for e in out)):
        experts = [e for e in out if e is not None]
        if any(w < 0 for w, _, _ in experts):
            raise W2SError(f"{method}: expert weights must be >= 0, got "
                           f"{[w for w, _, _ in experts]}")
        return experts
    got = "no guide" if guide is None else f"a {type(guide).__name__}"
    need = "tuned/untuned pairs" + (" or autoregressive reward LMs (arms)" if arms else "")
    raise W2SError(f"{method} needs {need} as its guide (a tuned and an untuned model, several "
                   f"for several experts), got {got}")


class Experts:
    """The experts' distinct models (a shared untuned model once) and where each one is."""

    def __init__(self, experts: Sequence[tuple[float, Any, Any]]) -> None:
        self.weights = torch.tensor([w for w, _, _ in experts], dtype=torch.float64)
        self.distinct: list[tuple[str, Any]] = []
        seen: dict[int, int] = {}

        def place(model: Any, role: str) -> int:
            if id(model) not in seen:
                seen[id(model)] = len(self.distinct)
                self.distinct.append((role, model))
            return seen[id(model)]

        self.index = [(place(t, f"tuned #{i + 1}" if u is not None else f"arm #{i + 1}"),
                       place(u, f"untuned #{i + 1}") if u is not None else None)
                      for i, (_, t, u) in enumerate(experts)]

    def shifts(self, guides: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per expert, ``log pi_tuned_i - log pi_untuned_i`` (an ARM: ``log pi_arm_i``),
        ``(B, V)``."""
        return [guides[t] - guides[u] if u is not None else guides[t] for t, u in self.index]


class MultiGuideRule:
    """``base + beta * sum_i w_i (tuned_i - untuned_i)``."""

    def __init__(self, experts: Sequence[tuple[float, Any, Any]], beta: float = 1.0) -> None:
        self.experts, self.beta = Experts(experts), beta

    def models(self) -> list[tuple[str, Any]]:
        return self.experts.distinct

    def __call__(self, base: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        out = base.clone()
        for w, shift in zip(self.experts.weights.tolist(), self.experts.shifts(guides)):
            out = out + self.beta * w * shift
        return out


def eft_multi(backend: Backend, guide: Guide | None, prompts: Sequence[str], beta: float,
              sampling: SamplingParams, params: dict[str, Any]) -> list[Result]:
    """EFT with several experts (the guide's weights): one rule on the one token-level loop."""
    rule = MultiGuideRule(experts_of(guide, "eft"), beta)
    return decode_fused(backend, guide, prompts, rule, sampling, method="eft", params=params)

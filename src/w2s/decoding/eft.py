"""Token-level logit arithmetic: emulated fine-tuning (EFT) / proxy tuning.

Mitchell et al. 2023 (EFT, "up-scaling") and Liu et al. 2024 (proxy tuning):

    log p(y_t | x, y_<t) = log pi_base(y_t | .) + beta * (log pi_tuned(y_t | .) - log pi_untuned(y_t | .))

renormalised over the shared vocabulary, then sampled with the usual temperature/top-k/top-p.
Each of the three models keeps its own KV cache and its own prompt format; all three must share
one vocabulary (the arithmetic is per token id). With beta = 0 this is plain sampling from the
base, token for token (same random slot 0). The decode loop is :mod:`w2s.decoding.token_level`;
this file is the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from w2s.decoding.common import knobs, sampling_of
from w2s.decoding.experts import eft_multi
from w2s.decoding.token_level import decode_fused, fused_logprobs
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import EFTParams, SamplingParams
from w2s.result import Result


@dataclass(frozen=True)
class EFTRule:
    """``base + beta (tuned - untuned)`` on normalised log-probabilities."""

    beta: float
    tuned: Any
    untuned: Any

    def models(self) -> list[tuple[str, Any]]:
        return [("tuned", self.tuned), ("untuned", self.untuned)]

    def __call__(self, base: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        tuned, untuned = guides
        return base + self.beta * (tuned - untuned)


def eft_logprobs(base: torch.Tensor, tuned: torch.Tensor, untuned: torch.Tensor,
                 beta: float) -> torch.Tensor:
    """Fused next-token log-probabilities ``(B, V)`` from three logit tensors ``(B, V)``."""
    return fused_logprobs(EFTRule(beta, None, None), [base, tuned, untuned])


def eft(backend: Backend, guide: Guide | None, prompts: Sequence[str],
        eft_params: EFTParams | None = None, sampling: SamplingParams | None = None) -> list[Result]:
    """Sample from the EFT/proxy-tuned distribution; ``guide`` is a tuned/untuned pair, or a
    weighted sum of pairs for several experts (:mod:`w2s.decoding.experts`)."""
    eft_params = knobs(eft_params, EFTParams, "eft")
    sampling = sampling_of(sampling)
    pair = guide.expert() if isinstance(guide, Guide) else None
    if pair is None or pair[1] is None:  # several experts, or an ARM: the experts' rule
        return eft_multi(backend, guide, prompts, eft_params.beta, sampling,
                         eft_params.to_dict())
    rule = EFTRule(eft_params.beta, *pair)
    return decode_fused(backend, guide, prompts, rule, sampling, method="eft",
                        params=eft_params.to_dict())

"""An autoregressive reward model (GenARM, Xu et al. ICLR 2025) as a guide and as an expert.

GenARM trains one language model pi_arm whose log-likelihood *is* the reward, token by token:

    r(x, y) = sum_t log pi_arm(y_t | x, y_<t),

so a frozen base is guided at the token level by log pi_base + (1/beta) sum_i w_i log pi_arm_i
(:mod:`w2s.decoding.experts`, where w2s's ``beta`` is GenARM's 1/beta), and searched at the
chunk level like any guide. A tuned/untuned pair is the special case that needs two models; an
ARM needs one. Complete responses include their end-of-sequence token, as the pair's do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from w2s.guides.base import Guide
from w2s.guides.pair import PairGuide, check_guide_model
from w2s.models.base import ParamCount
from w2s.models.hf import HFModel
from w2s.models.resolve import resolve_model


class ARMGuide(Guide):
    """The response's log-likelihood under one autoregressive reward LM."""

    def __init__(self, arm: HFModel) -> None:
        self.arm = arm

    def n_params(self) -> int:
        return self.arm.n_params if isinstance(self.arm, ParamCount) else 0

    def expert(self) -> tuple[Any, None]:
        return (self.arm, None)  # GenARM: log pi_arm itself is the shift

    @classmethod
    def load(cls, path: str, *, dtype: str = "auto", device: str = "auto",
             chat: bool = False) -> ARMGuide:
        return cls(HFModel.load(resolve_model(path), dtype=dtype, device=device, chat=chat))

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        sums, n = PairGuide._logprob_sums(self.arm, prompts, responses, ended)
        return sums.float(), n

    def check_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> None:
        check_guide_model(self.arm, prompts, max_new_tokens)

    def lengths(self, responses: Sequence[str], ended: Sequence[bool] | None
                ) -> torch.Tensor:
        return torch.tensor([len(t) for t in PairGuide.targets(self.arm, responses, ended)])

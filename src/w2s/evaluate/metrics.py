"""Per-response metrics: the base model's log-likelihood and the KL from the base.

KL is what a test-time method pays for its reward (the paper's frontier view). What can be
measured differs by method, and each row says which kind it holds (``kl_kind``):

- ``exact``: token-level methods. Base sampling has KL 0 by construction; EFT and "sample
  another model" sum the exact next-token KL(q ‖ base) along the sampled path (an unbiased
  estimate of the sequence-level KL). Both sides are the temperature-scaled distributions
  before top-k/top-p truncation, so the KL is always finite.
- ``untruncated``: the same, when top-k/top-p truncation is on (the sampled distributions are
  truncated; the KL is of the distributions before truncation).
- ``bound``: Best-of-N reports the analytic log N - (N-1)/N; CBS the selection-count bound
  R log(W*K) (see :func:`w2s.decoding.cbs.selection_kl_bound`). Look at the base log-likelihood
  alongside.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from w2s.logits import token_kl
from w2s.models.base import ScoringLM
from w2s.models.hf import HFModel


def base_loglik(base: ScoringLM, prompts: Sequence[str], ids: Sequence[Sequence[int]]
                ) -> list[float]:
    """Sum of log p_base(y_t | x, y_<t) over each response's base tokens."""
    return base.token_loglik(prompts, ids)


@torch.inference_mode()
def path_kl(q_model: HFModel, p_model: HFModel, prompts: Sequence[str],
            ids: Sequence[Sequence[int]], temperature: float) -> list[float]:
    """Exact per-token KL(q ‖ p) summed along each path of ``q_model``'s tokens (teacher
    forcing; each model formats the prompt its own way). Needs one shared vocabulary and a
    temperature > 0."""
    targets = [list(x) for x in ids]
    q_logits = q_model.target_logits([q_model.encode_prompt(p) for p in prompts], targets)
    p_logits = p_model.target_logits([p_model.encode_prompt(p) for p in prompts], targets)
    out = []
    for ql, pl in zip(q_logits, p_logits):
        v = min(ql.shape[-1], pl.shape[-1])
        out.append(float(token_kl(ql[:, :v], pl[:, :v], temperature).sum()))
    return out

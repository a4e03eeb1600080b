"""Best-of-N: N complete samples from the base; the guide picks the best.

Best-of-N is one chunk of weak-to-strong search: CBS with W = N, K = 1 and L = max_new_tokens
samples N complete responses in its only round (slots 0..N-1) and ranks them all. The analytic
KL of the Best-of-N policy from the base is at most log N - (N-1)/N.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from w2s.decoding.cbs import cbs
from w2s.decoding.common import knobs, sampling_of
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import BestOfNParams, SamplingParams, SearchParams
from w2s.result import Result


def bon_kl_bound(n: int) -> float:
    """The analytic KL of Best-of-N from the base: log N - (N-1)/N (Beirami et al. 2024 show it
    is an upper bound; it is exact when all N samples are distinct)."""
    return math.log(n) - (n - 1) / n


def bon(backend: Backend, guide: Guide | None, prompts: Sequence[str],
              bon: BestOfNParams | None = None, sampling: SamplingParams | None = None, *,
              return_all: bool = False) -> list[Result]:
    """N samples per prompt, ranked by ``guide``; ``candidates`` holds all N when ``return_all``."""
    bon = knobs(bon, BestOfNParams, "bon")
    sampling = sampling_of(sampling)
    search = SearchParams(w=bon.n, k=1, l=sampling.max_new_tokens)
    results = cbs(backend, guide, prompts, search, sampling, return_all=return_all, method="bon")
    for r in results:
        r.params = {"method": "bon", **bon.to_dict(), **sampling.to_dict()}
        r.stats = {"kl_bound": bon_kl_bound(bon.n)}
    return results


def bon_at_budget(bon: BestOfNParams, b: int, max_new: int) -> BestOfNParams:
    """N = b: b complete responses."""
    return dataclasses.replace(bon, n=b)

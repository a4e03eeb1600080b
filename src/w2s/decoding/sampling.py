"""Plain sampling from the base model (temperature, top-p, top-k, stop strings, EOS, seed).

Sample ``j`` of a prompt uses random slot ``j``; with a guide, each sample is also scored (the
guide never changes what is sampled).
"""

from __future__ import annotations

from collections.abc import Sequence

from w2s.decoding.common import (
    Entry,
    Frontier,
    finish_costs,
    prepare,
    prompt_groups,
    require,
    score_entries,
)
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import SamplingParams
from w2s.result import Cost, Result


def sample(backend: Backend, guide: Guide | None, prompts: Sequence[str],
           sampling: SamplingParams | None = None, *, n: int = 1) -> list[Result]:
    """``n`` samples per prompt; the first is the result, all ``n`` are in ``candidates``."""
    sampling = sampling or SamplingParams()
    if not isinstance(n, int) or n < 1:
        raise W2SError(f"n must be >= 1, got {n}")
    backend = require(backend, Backend, "sample")
    prep = prepare(backend, prompts, sampling)
    cost = [Cost() for _ in prep.prompts]
    entries: list[Entry] = []
    for group in prompt_groups(backend, len(prep.prompts), n):
        sub = prep.subset(group)
        sub_cost = [cost[i] for i in group]
        frontier = Frontier(backend, sub, sampling, sub_cost, n)
        rows = [(i, root, j) for i, root in enumerate(frontier.entries) for j in range(n)]
        grown = frontier.grow(rows, sampling.max_new_tokens)
        if guide is not None:
            score_entries(guide, sub, [i for i, _, _ in rows], grown, sub_cost)
        entries += grown
    cost = finish_costs(prep, cost)
    params = {"method": "sample", "n": n, **sampling.to_dict()}
    results = [Result.from_candidates(p, "sample",
                                      [e.candidate() for e in entries[i * n:(i + 1) * n]],
                                      cost[i], params)
               for i, p in enumerate(prep.prompts)]
    for r in results:
        r.stats = {"kl": 0.0}  # it samples the base itself
    return results

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
    run_groups,
    sampling_of,
    score_entries,
)
from w2s.decoding.observe import active, emit
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.models.base import Backend, SearchBackend
from w2s.params import SamplingParams
from w2s.result import Cost, Result


def sample(backend: Backend, guide: Guide | None, prompts: Sequence[str],
           sampling: SamplingParams | None = None, *, n: int = 1) -> list[Result]:
    """``n`` samples per prompt; the first is the result, all ``n`` are in ``candidates``."""
    sampling = sampling_of(sampling)
    if not isinstance(n, int) or n < 1:
        raise W2SError(f"n must be >= 1, got {n}")
    backend = require(backend, Backend, "sample")
    prep = prepare(backend, prompts, sampling)
    cost = [Cost() for _ in prep.prompts]

    def one_group(group: range) -> list[Entry]:
        sub = prep.subset(group)
        sub_cost = [cost[i] for i in group]
        frontier = Frontier(backend, sub, sampling, sub_cost, n)
        rows = [(i, root, j) for i, root in enumerate(frontier.entries) for j in range(n)]
        if active():
            grown = _grow_streaming(frontier, rows, sampling.max_new_tokens,
                                    STREAM_TOKENS if isinstance(backend, SearchBackend)
                                    else STREAM_TOKENS_STATELESS, list(group))
        else:
            grown = frontier.grow(rows, sampling.max_new_tokens)
        if guide is not None:
            score_entries(guide, sub, [i for i, _, _ in rows], grown, sub_cost)
        return grown

    entries: list[Entry] = run_groups(backend, prompt_groups(backend, len(prep.prompts), n),
                                      one_group)
    cost = finish_costs(prep, cost)
    params = {"method": "sample", "n": n, **sampling.to_dict()}
    results = [Result.from_candidates(p, "sample",
                                      [e.candidate() for e in entries[i * n:(i + 1) * n]],
                                      cost[i], params)
               for i, p in enumerate(prep.prompts)]
    for r in results:
        r.stats = {"kl": 0.0}  # it samples the base itself
    return results


STREAM_TOKENS = 1
"""Tokens per step while someone watches (a server streaming): with a search backend a step
costs one reindex, so tokens go out as they are sampled."""
STREAM_TOKENS_STATELESS = 8
"""The same for a stateless backend (an engine), where each step is one more request per row."""


def _grow_streaming(frontier: Frontier, rows: list[tuple[int, Entry, int]], max_new: int,
                    step: int, index: list[int]) -> list[Entry]:
    """The rows grown ``step`` tokens at a time, reporting sample 0 of each prompt as it grows.
    Token ``t`` of a slot uses the same random number however the response is chunked, so the
    answers equal those of one long step (tests pin it)."""
    out: list[Entry | None] = [None] * len(rows)
    live, cur = list(range(len(rows))), rows
    while cur:
        chunk = min(step, max_new - max(e.tokens for _, e, _ in cur))
        kids = frontier.grow(cur, chunk)
        nxt, nlive = [], []
        for (i, _, slot), kid, j in zip(cur, kids, live):
            if slot == 0:
                emit(index[i], kid.text)
            if kid.done(max_new):
                out[j] = kid
            else:
                nxt.append((i, kid, slot))
                nlive.append(j)
        cur, live = nxt, nlive
    return [e for e in out if e is not None]

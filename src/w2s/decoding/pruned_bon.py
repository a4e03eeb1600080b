"""Early-pruned Best-of-N (Speculative Rejection).

Sun et al., "Fast Best-of-N Decoding via Speculative Rejection" (NeurIPS 2024, arXiv
2410.20290): Best-of-N spends most of its compute finishing candidates that were already
hopeless; scoring partial responses early and dropping the worst keeps Best-of-N's choice at a
fraction of the tokens. Knobs (N, prune, every):

    candidates <- N base samples of `every` tokens (slots 0..N-1)
    at each checkpoint: the guide scores every candidate's response so far;
        keep the best ceil((1 - prune) * count) of the prompt's candidates (at least 1)
    the kept unfinished candidates grow by `every` more tokens, each from its own slot
    end: the best complete candidate by the guide's score of the whole response

Each candidate keeps its random slot, so a survivor's response is token for token the
Best-of-N sample of the same slot (the pruning only decides which ones are finished), and with
`every >= max_new_tokens` there is no checkpoint: Best-of-N exactly. The output is one of N
base samples, so KL(q || base) <= log N.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from w2s.decoding.common import (
    Entry,
    Frontier,
    Prepared,
    rank,
    run_search,
)
from w2s.decoding.observe import active, common_prefix, emit
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import PrunedBoNParams, SamplingParams
from w2s.result import Cost, Result


def pruned_bon(backend: Backend, guide: Guide | None, prompts: Sequence[str],
               knob: PrunedBoNParams | None = None, sampling: SamplingParams | None = None, *,
               return_all: bool = False) -> list[Result]:
    """Best-of-N whose worst partial candidates are dropped at every checkpoint."""
    return run_search("pruned_bon", backend, guide, prompts, knob, PrunedBoNParams, sampling,
                      return_all, lambda k: k.n, _prune)


def kept(count: int, prune: float) -> int:
    """Candidates a checkpoint keeps out of ``count``: ceil((1 - prune) count), at least 1."""
    return max(1, math.ceil((1 - prune) * count - 1e-9))


def _prune(backend: Backend, guide: Guide, prep: Prepared, knob: PrunedBoNParams,
           sampling: SamplingParams, cost: list[Cost], index: list[int]
           ) -> list[tuple[list[Entry], dict[str, float]]]:
    """One group of prompts; each prompt's surviving candidates, ranked, and its stats."""
    max_new = sampling.max_new_tokens
    frontier = Frontier(backend, prep, sampling, cost, knob.n, guide.session(prep.prompts))
    # round 1: N candidates per prompt, slot j for candidate j (Best-of-N's slots)
    rows = [(i, root, j) for i, root in enumerate(frontier.entries) for j in range(knob.n)]
    pools: list[list[Entry]] = [[] for _ in prep.prompts]
    while rows:
        chunk = min(knob.every, max_new - max(e.tokens for _, e, _ in rows))
        children = frontier.grow(rows, chunk)  # each candidate continues its own slot
        frontier.score()
        grown: list[list[Entry]] = [[] for _ in prep.prompts]
        for (i, _, _), c in zip(rows, children):
            grown[i].append(c)
        # a prompt's pool: the candidates just grown (slot order), then those already done
        pools = [g + [e for e in pool if e.done(max_new)] for g, pool in zip(grown, pools)]
        # a checkpoint for each prompt with unfinished candidates (whatever the others do)
        pools = [rank(pool)[:kept(len(pool), knob.prune)]
                 if any(not e.done(max_new) for e in pool) else rank(pool) for pool in pools]
        rows = [(i, e, e.slot) for i, pool in enumerate(pools) for e in sorted(
            (e for e in pool if not e.done(max_new)), key=lambda e: e.slot)]
        if active():
            for i, pool in zip(index, pools):
                emit(i, common_prefix([e.text for e in pool]))
    return [(pool, {"kl_bound": math.log(knob.n), "kept": float(len(pool))}) for pool in pools]


def worst_cost(knob: PrunedBoNParams, max_new: int) -> int:
    """Base tokens when no candidate ends early: every round grows the kept candidates by
    ``every`` tokens (the first N), pruning between rounds."""
    live, tokens, total = knob.n, 0, 0
    while tokens < max_new:
        step = min(knob.every, max_new - tokens)
        total += live * step
        tokens += step
        live = kept(live, knob.prune)
    return total


def pruned_at_budget(knob: PrunedBoNParams, b: int, max_new: int) -> PrunedBoNParams:
    """The largest N whose worst-case cost is at most b responses' tokens (prune and every
    kept): the pruning is spent on more candidates, as Speculative Rejection does."""
    n = b
    while worst_cost(dataclasses.replace(knob, n=n + 1), max_new) <= b * max_new:
        n += 1
    return dataclasses.replace(knob, n=n)

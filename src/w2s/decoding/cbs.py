"""Chunk-level beam search (CBS) = weak-to-strong search.

Zhou et al., "Weak-to-Strong Search: Align Large Language Models via Searching over Small
Language Models" (2024, arXiv 2405.19262), Algorithm 1. Knobs (W, K, L):

    beam <- {empty response}
    round 1: sample W*K chunks of up to L base tokens from the empty response
    round r: sample K chunks per unfinished beam entry (finished entries stay candidates)
    score every candidate's whole response with the guide, e.g.
        r(x, y) = log pi_tuned(y|x) - log pi_untuned(y|x)
    keep the top W; stop when every kept entry is finished; return the best (or all W, ranked)

Slots: in round 1, child j of the empty response uses random slot j; later, child k of the beam
entry at rank w uses slot w*K + k.

Adaptive budgets (AdaSearch, 2025): ``schedule`` gives each round its own (W_r, K_r), the last
pair repeating: round 1 samples W_1 K_1 chunks, round r samples K_r per kept entry and keeps
the top W_r. Every sampled token is counted in ``cost.base_tokens``, so a schedule is compared
with Best-of-N at equal base tokens; a constant schedule is plain CBS token for token. The
preset ``adasearch[:DECAY]`` is AdaSearch's Decay schedule in beam form (AdaBeam: the beam
width varies per block): round r keeps W_r = max(1, floor(w DECAY^(r-1))) entries with K
successors each, and a budget of b responses sizes w to the largest whose rounds sample at
most b * max_new_tokens base tokens (:func:`adasearch_at_budget`). Token t of a slot's chunk uses uniform (seed, prompt, slot, t)
(see ``w2s.rng``). Hence W=K=1 is plain sampling and L >= max_new_tokens is Best-of-N with
N = W*K, token for token.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from w2s.decoding.common import (
    Entry,
    Frontier,
    Prepared,
    run_search,
)
from w2s.decoding.observe import active, common_prefix, emit
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import SamplingParams, SearchParams
from w2s.result import Cost, Result


def cbs(backend: Backend, guide: Guide | None, prompts: Sequence[str],
        search: SearchParams | None = None, sampling: SamplingParams | None = None, *,
        return_all: bool = False, method: str = "cbs") -> list[Result]:
    """Weak-to-strong search: chunk-level beam search over the base, scored by ``guide``.

    Returns one :class:`~w2s.result.Result` per prompt: the best response, and in
    ``candidates`` the final beam ranked best first (all W when ``return_all``, else the best).
    """
    return run_search(method, backend, guide, prompts, search, SearchParams, sampling,
                      return_all, lambda k: k.max_rows(), _beams)


def _beams(backend: Backend, guide: Guide, prep: Prepared, search: SearchParams,
           sampling: SamplingParams, cost: list[Cost], index: list[int]
           ) -> list[tuple[list[Entry], dict[str, float]]]:
    """Each prompt's final beam and its stats: the KL bound and the rounds that grew it."""
    beams = _search(backend, guide, prep, search, sampling, cost, index)
    return [(beam, {"kl_bound": selection_kl_bound(beam[0].rounds, search.draws()),
                    "rounds": beam[0].rounds}) for beam in beams]


def selection_kl_bound(rounds: int, n: int | Sequence[int]) -> float:
    """Selection-count KL bound. Round ``r`` draws at most ``n_r`` base chunks from any one
    prefix (``W*K``; with a schedule ``W_1 K_1``, then ``W_{r-1} K_r``, the last repeating), so
    the search returns a given chunk at most ``n_r`` times as often as the base samples it
    (union bound, conditionally on the rounds before). Over the ``R`` rounds that grew a
    response, log q(y) - log p_base(y) <= sum_r log n_r (R log(W*K) without a schedule): the KL
    is at most the mean of that. (Best-of-N's analytic log N - (N-1)/N is tighter and replaces
    it there.)"""
    per = [n] if isinstance(n, int) else list(n)
    return sum(math.log(per[min(r, len(per) - 1)]) for r in range(rounds))


def _search(backend: Backend, guide: Guide, prep: Prepared, search: SearchParams,
            sampling: SamplingParams, cost: list[Cost], index: list[int]) -> list[list[Entry]]:
    """CBS for one group of prompts (``index``: their places in the call); returns each
    prompt's final beam, ranked. After each round it reports (:mod:`~w2s.decoding.observe`)
    the committed prefix: the text every kept entry shares, which no later round can change."""
    max_new, plan = sampling.max_new_tokens, search.rounds()
    # one owner for every per-row state: the base's cache rows and the guide session's rows
    frontier = Frontier(backend, prep, sampling, cost, search.max_rows(),
                        guide.session(prep.prompts))
    beams: list[list[Entry]] = [[e] for e in frontier.entries]  # per prompt, ranked
    first, round_no = True, 0
    while any(not e.done(max_new) for beam in beams for e in beam):
        w, k = plan[min(round_no, len(plan) - 1)]  # this round's width and successors
        round_no += 1
        # (prompt index, parent, slot) for every chunk sampled this round: W*K per prompt
        rows: list[tuple[int, Entry, int]] = []
        for i, beam in enumerate(beams):
            if first:
                rows += [(i, beam[0], j) for j in range(w * k)]
            else:
                rows += [(i, e, r * k + j) for r, e in enumerate(beam) if not e.done(max_new)
                         for j in range(k)]
        # unfinished entries all hold r*L tokens, so one chunk length serves every row (the
        # longest decides, should an engine's counts differ: no row passes max_new_tokens)
        chunk = min(search.l, max_new - max(e.tokens for _, e, _ in rows))
        children = frontier.grow(rows, chunk)  # reindexes base and guide rows together
        frontier.score()
        # candidates: new children (slot order), then finished entries carried over
        pools: list[list[Entry]] = [[] for _ in prep.prompts]
        for (i, _, _), c in zip(rows, children):
            pools[i].append(c)
        for i, beam in enumerate(beams):
            pools[i] += [e for e in beam if e.done(max_new) and e.score is not None]
        # keep the top W by score; sort is stable, so ties keep candidate order
        beams = [sorted(pool, key=lambda e: -e.score)[:w] if pool else beam  # type: ignore[operator]
                 for pool, beam in zip(pools, beams)]
        first = False
        if active():
            for i, beam in zip(index, beams):
                emit(i, common_prefix([e.text for e in beam]))
    return beams


def search_tokens(search: SearchParams, max_new: int) -> int:
    """Base tokens one prompt's search samples when every response runs to ``max_new``
    (EOS ignored): round r draws ``draws()[r]`` chunks (the last repeating) of L tokens, the
    last round what is left."""
    per = search.draws()
    return sum(per[min(r, len(per) - 1)] * min(search.l, max_new - start)
               for r, start in enumerate(range(0, max_new, search.l)))


def adasearch_at_budget(search: SearchParams, b: int, max_new: int) -> SearchParams:
    """The AdaSearch preset sized to a budget: the largest first width w whose decaying rounds
    (see :meth:`SearchParams.rounds`) sample at most ``b * max_new`` base tokens (K, L and the
    decay kept). Tokens grow with w, so a bisection finds it."""
    def fits(w: int) -> bool:
        return search_tokens(dataclasses.replace(search, w=w), max_new) <= b * max_new

    if not fits(1):
        raise W2SError(f"cbs: k={search.k} candidates per entry cannot fit a budget of {b} "
                       "responses; lower k")
    lo, hi = 1, b * max_new // (search.k * min(search.l, max_new)) + 1  # hi: round 1 alone overspends
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return dataclasses.replace(search, w=lo)


def cbs_at_budget(search: SearchParams, b: int, max_new: int) -> SearchParams:
    """W*K rows a round and rounds that together cover max_new tokens: W = b // K (K and L
    kept), so W*K*max_new <= b responses' tokens; the AdaSearch preset sizes its first width."""
    if search.decay() is not None:
        return adasearch_at_budget(search, b, max_new)
    if search.schedule:
        raise W2SError("cbs: a budget sizes W; give w and k, not a schedule")
    if b < search.k:
        raise W2SError(f"cbs: k={search.k} candidates per entry cannot fit a budget of {b} "
                       "responses; lower k")
    return dataclasses.replace(search, w=b // search.k)

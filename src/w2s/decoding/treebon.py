"""TreeBoN: speculative tree search with Best-of-N.

Qiu et al., "TreeBoN: Enhancing Inference-Time Alignment with Speculative Tree-Search and
Best-of-N Sampling" (EMNLP 2025 Findings, arXiv 2410.16033). Guided by a DPO model's implicit
per-token reward -- w2s's guide, log pi_tuned - log pi_untuned. Knobs (N, branch, first,
per_token):

    layer 1: N partial responses of `first` tokens (slots 0..N-1)
    layer r: the guide scores every partial response (per base token when per_token);
             keep the best N // branch unfinished ones as parents (finished ones stay
             candidates); each parent grows `branch` children over a segment of
             first * 2^(r-1) tokens: child 0 continues the parent's own slot (the plain
             sampling branch), the others draw from fresh slots
    end: every complete response ranked by the guide's score of the whole response

Each layer grows at most N rows, so the base tokens stay within Best-of-N's N * max_new.
With branch = 1 every node is kept and continues its own slot: Best-of-N token for token.
The output is the best of at most N * layers base samples of whole responses, each layer's
selection a best-of-N: KL(q || base) <= layers * log(N) (the selection-count bound of CBS).
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
from w2s.params import SamplingParams, TreeBoNParams
from w2s.result import Cost, Result


def treebon(backend: Backend, guide: Guide | None, prompts: Sequence[str],
            knob: TreeBoNParams | None = None, sampling: SamplingParams | None = None, *,
            return_all: bool = False) -> list[Result]:
    """A tree of doubling segments, pruned to the best partial responses at every layer."""
    return run_search("treebon", backend, guide, prompts, knob, TreeBoNParams, sampling,
                      return_all, lambda k: k.n, _tree)


def _partial(e: Entry, per_token: bool) -> float:
    """A partial response's rank key: its score, per base token when ``per_token``."""
    assert e.score is not None
    return e.score / max(1, e.tokens) if per_token else e.score


def _tree(backend: Backend, guide: Guide, prep: Prepared, knob: TreeBoNParams,
          sampling: SamplingParams, cost: list[Cost], index: list[int]
          ) -> list[tuple[list[Entry], dict[str, float]]]:
    """One group of prompts: each prompt's complete responses ranked, and the layers grown."""
    max_new, n = sampling.max_new_tokens, knob.n
    frontier = Frontier(backend, prep, sampling, cost, n, guide.session(prep.prompts))
    rows = [(i, root, j) for i, root in enumerate(frontier.entries) for j in range(n)]
    fresh = [n] * len(prep.prompts)  # each prompt's next unused slot
    done: list[list[Entry]] = [[] for _ in prep.prompts]
    layers, segment = [0] * len(prep.prompts), knob.first  # the layers that grew each prompt
    while rows:
        chunk = min(segment, max_new - max(e.tokens for _, e, _ in rows))
        children = frontier.grow(rows, chunk)
        frontier.score()
        for i in {i for i, _, _ in rows}:
            layers[i] += 1
        segment *= 2
        live: list[list[Entry]] = [[] for _ in prep.prompts]
        for (i, _, _), c in zip(rows, children):
            (done[i] if c.done(max_new) else live[i]).append(c)
        rows = []
        for i, nodes in enumerate(live):  # keep the best n // branch partial responses
            keep = sorted(nodes, key=lambda e: -_partial(e, knob.per_token))
            for parent in keep[:max(1, n // knob.branch)]:
                rows.append((i, parent, parent.slot))  # the plain-sampling branch
                for _ in range(knob.branch - 1):
                    rows.append((i, parent, fresh[i]))
                    fresh[i] += 1
        if active():
            for i, nodes, fin in zip(index, live, done):
                emit(i, common_prefix([e.text for e in nodes + fin]))
    return [(rank(pool), {"kl_bound": r * math.log(n), "layers": float(r)})
            for pool, r in zip(done, layers)]


def treebon_at_budget(knob: TreeBoNParams, b: int, max_new: int) -> TreeBoNParams:
    """N = b nodes a layer (each layer grows at most N rows); the branching is capped at N."""
    return dataclasses.replace(knob, n=b, branch=min(knob.branch, b))

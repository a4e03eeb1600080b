"""Pieces every decoder shares: preparing prompts, growing candidates, scoring them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from w2s.errors import W2SError
from w2s.guides import Guide, ScoringSession
from w2s.models.base import Backend
from w2s.params import SamplingParams
from w2s.result import Candidate, Cost
from w2s.rng import prompt_key, stream_keys


@dataclass
class Prepared:
    """Prompts encoded for the base, with their random-stream keys."""

    prompts: list[str]
    ids: list[list[int]]
    keys: list[int]
    start: float

    def subset(self, idx: Sequence[int]) -> Prepared:
        """The same prompts, restricted to ``idx`` (a batch of the whole call)."""
        return Prepared([self.prompts[i] for i in idx], [self.ids[i] for i in idx],
                        [self.keys[i] for i in idx], self.start)


def prepare(backend: Backend, prompts: Sequence[str], sampling: SamplingParams) -> Prepared:
    """Validate and encode prompts; raise one-line errors for empty or too-long input."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise W2SError("no prompts given")
    for p in prompts:
        if not isinstance(p, str):
            raise W2SError(f"prompts must be strings, got {type(p).__name__}")
    ids = [backend.encode_prompt(p) for p in prompts]
    for p_ids in ids:
        backend.check_fits(p_ids, sampling.max_new_tokens)
    return Prepared(prompts, ids, [prompt_key(sampling.seed, p) for p in prompts], time.perf_counter())


@dataclass
class Entry:
    """A partial or complete response under construction."""

    ids: list[int]
    text: str = ""
    ended: bool = False  # EOS or stop string
    score: float | None = None
    rounds: int = 0  # chunks this response was grown by (CBS's KL bound counts them)

    def done(self, max_new_tokens: int) -> bool:
        return self.ended or len(self.ids) >= max_new_tokens

    def candidate(self) -> Candidate:
        return Candidate(self.text, list(self.ids), self.score, self.ended)


class Grower:
    """Grows candidates by sampling chunks from the base model.

    With a backend that keeps search state (``open_search``/``reindex``/``sample_chunk``, the
    white-box one), each prompt is encoded once, every live candidate keeps its KV-cache row,
    children copy their parent's row and losers are dropped: no prefix is ever re-encoded.
    Any other backend gets the stateless path: ``sample(prompt + response so far)``.
    """

    def __init__(self, backend: Backend, prep: Prepared, sampling: SamplingParams,
                 cost: list[Cost], roots: list[Entry]) -> None:
        self.backend, self.prep, self.sampling, self.cost = backend, prep, sampling, cost
        self.cached = all(hasattr(backend, a) for a in ("open_search", "reindex", "sample_chunk"))
        self.state = backend.open_search(prep.ids) if self.cached else None  # type: ignore[attr-defined]
        self.checked = False
        self.row_of = {id(e): i for i, e in enumerate(roots)}  # entry -> state row

    def grow(self, rows: list[tuple[int, Entry, int]], max_tokens: int) -> list[Entry]:
        """Sample up to ``max_tokens`` new tokens for each (prompt index, parent, slot) row."""
        if not rows:
            return []
        keys = torch.tensor([self.prep.keys[i] for i, _, _ in rows], dtype=torch.long)
        slots = torch.tensor([s for _, _, s in rows], dtype=torch.long)
        streams = stream_keys(keys, slots)
        parents = [e.ids for _, e, _ in rows]
        if self.cached:
            b = self.backend
            if not self.checked and hasattr(b, "check_memory"):
                b.check_memory(len(rows), max(map(len, self.prep.ids)) + self.sampling.max_new_tokens)
                self.checked = True
            self.state = b.reindex(self.state, [self.row_of[id(e)] for _, e, _ in rows],  # type: ignore[attr-defined]
                                   spare=max_tokens + 1)  # the chunk (and a pending token)
            conts, self.state = b.sample_chunk(self.state, parents, streams, max_tokens,  # type: ignore[attr-defined]
                                               self.sampling)
        else:
            conts = self.backend.sample([self.prep.ids[i] for i, _, _ in rows], parents, streams,
                                        max_tokens, self.sampling)
        children = []
        for (i, parent, _), c in zip(rows, conts):
            ids = parent.ids + c.token_ids
            self.cost[i].base_tokens += len(c.token_ids)
            children.append(Entry(ids, self.backend.response_text(ids, self.sampling.stop), c.ended))
        self.row_of = {id(c): n for n, c in enumerate(children)}
        return children

    def keep(self, live: list[Entry]) -> None:
        """Only ``live`` entries will have children. Their cache rows are gathered lazily, by
        the next round's expansion, so selection and expansion cost one cache copy, not two."""
        self.row_of = {id(e): self.row_of[id(e)] for e in live}


def prompt_groups(backend: Backend, n_prompts: int, rows_per_prompt: int) -> list[range]:
    """Split prompts so one group holds at most ``backend.batch_size`` rows (at least 1 prompt)."""
    cap = max(1, getattr(backend, "batch_size", 64) // max(1, rows_per_prompt))
    return [range(lo, min(lo + cap, n_prompts)) for lo in range(0, n_prompts, cap)]


def score_entries(guide: Guide, prep: Prepared, owners: list[int], entries: list[Entry],
                  cost: list[Cost], session: ScoringSession | None = None,
                  parents: list[Entry] | None = None) -> None:
    """Score each entry (whole response so far) with the guide, in one batch.

    With a ``session`` (search), children of ``parents`` are scored incrementally.
    """
    if not entries:
        return
    texts, ended = [e.text for e in entries], [e.ended for e in entries]
    if session is not None and parents is not None:
        values, tokens = session.score(owners, [id(p) for p in parents],
                                       [id(e) for e in entries], texts, ended)
    else:
        values, tokens = guide.score_with_cost([prep.prompts[i] for i in owners], texts, ended)
    for e, v in zip(entries, values.tolist()):
        e.score = float(v)
    # attribute guide tokens to prompts in proportion to their entries (exact for one prompt)
    per_prompt: dict[int, int] = {}
    for i in owners:
        per_prompt[i] = per_prompt.get(i, 0) + 1
    for i, n in per_prompt.items():
        cost[i].guide_tokens += round(tokens * n / len(entries))


def finish_costs(prep: Prepared, cost: list[Cost]) -> list[Cost]:
    wall = time.perf_counter() - prep.start
    for c in cost:
        c.wall_time_s = wall
    return cost


def require_guide(guide: Guide | None, method: str) -> Guide:
    if guide is None:
        raise W2SError(f"{method} needs a guide (a tuned/untuned pair or a reward model)")
    if not isinstance(guide, Guide):
        raise W2SError(f"{method}: guide must be a w2s Guide, got {type(guide).__name__}")
    return guide

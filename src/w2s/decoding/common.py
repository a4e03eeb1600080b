"""Pieces every decoder shares: preparing prompts, growing candidates, scoring them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from w2s.errors import W2SError
from w2s.guides import Guide
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

    def done(self, max_new_tokens: int) -> bool:
        return self.ended or len(self.ids) >= max_new_tokens

    def candidate(self) -> Candidate:
        return Candidate(self.text, list(self.ids), self.score, self.ended)


def expand(backend: Backend, prep: Prepared, rows: list[tuple[int, Entry, int]], max_tokens: int,
           sampling: SamplingParams, cost: list[Cost]) -> list[Entry]:
    """Sample up to ``max_tokens`` new tokens for each (prompt index, parent, slot) row."""
    if not rows:
        return []
    keys = torch.tensor([prep.keys[i] for i, _, _ in rows], dtype=torch.long)
    slots = torch.tensor([s for _, _, s in rows], dtype=torch.long)
    conts = backend.sample([prep.ids[i] for i, _, _ in rows], [e.ids for _, e, _ in rows],
                           stream_keys(keys, slots), max_tokens, sampling)
    children = []
    for (i, parent, _), c in zip(rows, conts):
        ids = parent.ids + c.token_ids
        cost[i].base_tokens += len(c.token_ids)
        children.append(Entry(ids, backend.response_text(ids, sampling.stop), c.ended))
    return children


def score_entries(guide: Guide, prep: Prepared, owners: list[int], entries: list[Entry],
                  cost: list[Cost]) -> None:
    """Score each entry (whole response so far) with the guide, in one batch."""
    if not entries:
        return
    scores = []
    for i, e in zip(owners, entries):
        scores.append((prep.prompts[i], e.text))
    values, tokens = guide.score_with_cost([p for p, _ in scores], [t for _, t in scores])
    per_prompt: dict[int, int] = {}
    for i in owners:
        per_prompt[i] = per_prompt.get(i, 0) + 1
    for e, v in zip(entries, values.tolist()):
        e.score = float(v)
    # attribute guide tokens to prompts in proportion to their entries (exact when one prompt)
    total = len(entries)
    for i, n in per_prompt.items():
        cost[i].guide_tokens += round(tokens * n / total)


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

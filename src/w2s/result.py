"""Typed results returned by every decoder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cost:
    """What a decode spent, summed over everything done for one prompt."""

    base_tokens: int = 0
    """Tokens sampled from the base model (all candidates, kept or not)."""
    guide_tokens: int = 0
    """Response tokens scored by the guide's models (each re-scored token counts again)."""
    wall_time_s: float = 0.0
    """Wall time of the decoder call that produced this result: a batch's time, shared by
    its ``batch_prompts`` prompts (decoded together, they have no time of their own)."""
    batch_prompts: int = 1
    """How many prompts that call decoded together (``wall_time_s`` is theirs together)."""
    base_read: int = 0
    """Prompt and prefix tokens the base processed without sampling them: each prompt once in
    process (its KV cache keeps the rest); through an engine, every request's prompt and
    response so far (what it re-reads unless its prefix cache serves them)."""
    flops: float = 0.0
    """Estimated forward-pass FLOPs, 2 * parameters * tokens per model: the base's sampled and
    read tokens, the guide's scored tokens (0 where a model's size is unknown, e.g. an
    engine's). Filled by ``DecoderSpec.run``, the call every face makes."""

    def add(self, other: Cost) -> None:
        self.base_tokens += other.base_tokens
        self.guide_tokens += other.guide_tokens
        self.base_read += other.base_read
        self.flops += other.flops


@dataclass
class Candidate:
    """One response: its text, the base token ids that produced it, its guide score."""

    text: str
    token_ids: list[int]
    score: float | None = None
    finished: bool = False
    """True when the response ended by EOS or a stop string (not by max_new_tokens alone)."""


@dataclass
class Result:
    """The outcome of decoding one prompt.

    ``text``/``token_ids``/``score`` are the chosen response; ``candidates`` holds every response
    the decoder returns for this prompt, best first (one unless ``return_all`` was asked, or
    ``n > 1`` samples for plain sampling).
    """

    prompt: str
    method: str
    text: str
    token_ids: list[int]
    score: float | None
    finished: bool
    candidates: list[Candidate] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    """What the decoder knows about how far it moved from the base: ``kl`` (EFT: the exact
    per-token KL from the base summed along the sampled path; sampling: 0) or ``kl_bound``
    (Best-of-N: the analytic log N - (N-1)/N; CBS: the selection-count bound), ``rounds`` (CBS),
    ``small_fraction`` and ``nudges`` (Nudging: the share of tokens the small model wrote)."""

    @property
    def seed(self) -> int | None:
        """The seed the response was sampled with (drawn fresh when none was given): pass it
        in ``SamplingParams(seed=...)`` to get the same response again."""
        seed = self.params.get("seed")
        return int(seed) if isinstance(seed, int) else None

    @property
    def finish_reason(self) -> str:
        """OpenAI's word for how the response ended: ``stop`` (EOS or a stop string) or
        ``length`` (max_new_tokens)."""
        return "stop" if self.finished else "length"

    def to_dict(self) -> dict[str, Any]:
        """The one wire form of a result (``w2s generate --json``, the Python API's JSON):
        ``response`` for the text, ``finish_reason`` beside ``finished``, every candidate with
        its ``response``; :meth:`from_dict` reads it back."""
        def cand(c: Candidate) -> dict[str, Any]:
            return {"response": c.text, "token_ids": list(c.token_ids), "score": c.score,
                    "finished": c.finished}

        return {"prompt": self.prompt, "response": self.text, "method": self.method,
                "score": self.score, "finished": self.finished,
                "finish_reason": self.finish_reason, "token_ids": list(self.token_ids),
                "cost": dataclasses.asdict(self.cost), "params": dict(self.params),
                "stats": dict(self.stats), "candidates": [cand(c) for c in self.candidates]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        """The result :meth:`to_dict` wrote (``candidates`` may be left out)."""
        cands = [Candidate(c["response"], list(c["token_ids"]), c.get("score"),
                           bool(c.get("finished", False))) for c in d.get("candidates", [])]
        return cls(prompt=d["prompt"], method=d["method"], text=d["response"],
                   token_ids=list(d["token_ids"]), score=d.get("score"),
                   finished=bool(d["finished"]), candidates=cands,
                   cost=Cost(**d.get("cost", {})), params=dict(d.get("params", {})),
                   stats=dict(d.get("stats", {})))

    @classmethod
    def from_candidates(
        cls, prompt: str, method: str, ranked: list[Candidate], cost: Cost, params: dict[str, Any]
    ) -> Result:
        best = ranked[0]
        return cls(prompt=prompt, method=method, text=best.text, token_ids=list(best.token_ids),
                   score=best.score, finished=best.finished, candidates=ranked, cost=cost,
                   params=params)

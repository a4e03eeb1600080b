"""Search outputs as training rows, in the shapes TRL's trainers read.

One search of one prompt (its ranked candidates, and optionally a plain sample of the base for
the same prompt and seed) becomes:

- an **SFT** row: the search's answer as the completion (RAFT / ReST's "improve" data) --
  ``prompt`` / ``completion``, or ``messages`` (a user turn and the assistant's answer) for chat
  models, as ``SFTTrainer`` reads them;
- a **preference** row (``DPOTrainer``): ``chosen`` / ``rejected`` -- the best against the worst
  of the search's candidates (West-of-N), or the search's answer against the plain sample;
- two **KTO** rows (``KTOTrainer``): the best with ``label: true``, the worst (or the plain
  sample) with ``label: false``.

Every row also carries where it came from (method, knobs, seed, prompt index) and its scores:
the guide's, and each gold scorer's where the task has one. A pair whose two texts are equal
teaches nothing and is left out (and counted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from w2s.errors import W2SError

Pairs = Literal["best-worst", "vs-sample"]
PAIRS: tuple[str, ...] = ("best-worst", "vs-sample")


@dataclass(frozen=True)
class Scored:
    """One response with its guide score and gold scores."""

    text: str
    score: float | None
    finished: bool
    gold: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "score": self.score, "finished": self.finished,
                "gold": dict(self.gold)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scored:
        return cls(d["text"], d.get("score"), bool(d.get("finished", False)),
                   dict(d.get("gold") or {}))


@dataclass(frozen=True)
class Searched:
    """What one search of one prompt gave: its candidates, best first, and the plain sample."""

    prompt: str
    prompt_index: int
    seed: int
    candidates: Sequence[Scored]
    sample: Scored | None = None

    def origin(self, method: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
        return {"method": method, "knobs": dict(knobs), "seed": self.seed,
                "prompt_index": self.prompt_index}


def _prompt_part(prompt: str, completion: str, chat: bool, key: str = "completion"
                 ) -> dict[str, Any]:
    """TRL's two dataset formats: standard (``prompt`` + text) or conversational (turns)."""
    if chat:
        return {"prompt": [{"role": "user", "content": prompt}],
                key: [{"role": "assistant", "content": completion}]}
    return {"prompt": prompt, key: completion}


def sft_row(s: Searched, method: str, knobs: Mapping[str, Any], chat: bool) -> dict[str, Any]:
    """The search's answer as a supervised example (``messages`` for chat models)."""
    best = s.candidates[0]
    body: dict[str, Any] = (
        {"messages": [{"role": "user", "content": s.prompt},
                      {"role": "assistant", "content": best.text}]}
        if chat else {"prompt": s.prompt, "completion": best.text})
    return {**body, "score": best.score, "gold": dict(best.gold), **s.origin(method, knobs)}


def sft_rows(s: Searched, method: str, knobs: Mapping[str, Any], chat: bool, answers: int = 1
             ) -> list[dict[str, Any]]:
    """The search's ``answers`` best *distinct* candidates as SFT rows, best first (one prompt
    with several good answers teaches less of one phrasing than the same answer repeated);
    fewer when the search found fewer distinct texts. With more than one, each row carries
    its ``answer_rank`` (0: the best)."""
    if answers == 1:
        return [sft_row(s, method, knobs, chat)]
    seen: set[str] = set()
    rows = []
    for c in s.candidates:
        if c.text in seen:
            continue
        seen.add(c.text)
        row = sft_row(Searched(s.prompt, s.prompt_index, s.seed, [c], s.sample), method, knobs,
                      chat)
        rows.append({**row, "answer_rank": len(rows)})
        if len(rows) == answers:
            break
    return rows


def pair_of(s: Searched, pairs: Pairs) -> tuple[Scored, Scored]:
    """(chosen, rejected): the best and the worst candidate, or the best and the plain sample."""
    if pairs == "vs-sample":
        if s.sample is None:
            raise W2SError("preference rows against a plain sample need that sample; it is "
                           "missing from this row")
        return s.candidates[0], s.sample
    if len(s.candidates) < 2:
        raise W2SError("best-against-worst preference rows need at least two candidates per "
                       f"prompt; this method returned {len(s.candidates)} (use a ranked method "
                       "with return_all, or --pairs vs-sample)")
    return s.candidates[0], s.candidates[-1]


def preference_row(s: Searched, method: str, knobs: Mapping[str, Any], chat: bool,
                   pairs: Pairs) -> dict[str, Any] | None:
    """``prompt`` / ``chosen`` / ``rejected`` with both sides' scores; None when the two texts
    are equal (nothing to prefer)."""
    chosen, rejected = pair_of(s, pairs)
    if chosen.text == rejected.text:
        return None
    row = _prompt_part(s.prompt, chosen.text, chat, "chosen")
    row["rejected"] = _prompt_part(s.prompt, rejected.text, chat, "rejected")["rejected"]
    return {**row, "score_chosen": chosen.score, "score_rejected": rejected.score,
            "gold_chosen": dict(chosen.gold), "gold_rejected": dict(rejected.gold),
            "pairs": pairs, **s.origin(method, knobs)}


def kto_rows(s: Searched, method: str, knobs: Mapping[str, Any], chat: bool,
             pairs: Pairs) -> list[dict[str, Any]]:
    """The preferred response labelled true and the other false (unpaired, as KTO reads)."""
    chosen, rejected = pair_of(s, pairs)
    if chosen.text == rejected.text:
        return []
    return [{**_prompt_part(s.prompt, r.text, chat), "label": label, "score": r.score,
             "gold": dict(r.gold), **s.origin(method, knobs)}
            for r, label in ((chosen, True), (rejected, False))]

"""The controlled-sentiment task (Zhou et al. 2024, §4.1, after Rafailov et al. 2023).

Prompts are the first words of held-out movie reviews; the target behaviour is a *positive*
continuation. The gold reward is VADER's compound score of the response (a lexicon and rule
based scorer, independent of every model in the zoo); TextBlob's polarity is a second,
independent scorer so a reader can see gains are not an artefact of one lexicon.
"""

from __future__ import annotations

from pathlib import Path

from w2s.errors import W2SError
from w2s.tasks.base import Task, build_golds, resolve_file
from w2s.tasks.gold import GOLD_SCORERS, textblob, vader  # noqa: F401 - re-exported

PROMPTS_FILE = Path(__file__).resolve().parent.parent / "zoo" / "models" / "prompts.jsonl"


def pick_prompt(row: dict, path: Path, n: int) -> str:
    if not isinstance(row.get("prompt"), str):
        raise W2SError(f"{path}: record {n} needs a string field 'prompt'")
    return row["prompt"]


def load_prompts(path: Path = PROMPTS_FILE, limit: int | None = None) -> list[str]:
    """The held-out review prefixes shipped with the zoo (disjoint from its training text)."""
    from w2s.tasks.base import read_records

    prompts = [pick_prompt(r, path, n) for n, r in enumerate(read_records(path), 1)]
    return prompts[:limit] if limit else prompts


OPTIONS = {"name", "path", "gold"}


def build(spec: dict, base_dir: Path, *, dtype: str, device: str):  # noqa: ANN201
    """The held-out review prefixes shipped with the zoo (or ``path``: a JSONL of prompts);
    gold: VADER, then TextBlob, unless ``gold`` says otherwise."""
    unknown = set(spec) - OPTIONS
    if unknown:
        raise W2SError(f"unknown option(s) for task sentiment: {', '.join(sorted(unknown))}")
    path = resolve_file(spec["path"], base_dir, "sentiment path") if spec.get("path") else PROMPTS_FILE
    golds = build_golds(spec.get("gold"), ("vader", "textblob"), dtype=dtype, device=device,
                        base_dir=base_dir)
    return Task("sentiment", load_prompts(path), golds, spec=spec)

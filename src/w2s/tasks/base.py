"""What every task is made of: the :class:`Task` record, config-file helpers, and gold
scorers built from a config's ``gold:`` list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.textfile import check_text, read_utf8

GoldFn = Callable[[Sequence[str], Sequence[str]], list[float]]
"""(prompts, responses) -> one gold reward per response, higher is better."""


@dataclass
class Task:
    name: str
    prompts: list[str]
    golds: dict[str, GoldFn]
    chat: bool = False
    """Whether the task's prompts are meant for chat templates (instructions)."""
    alpaca_eval: bool = False
    """Also write outputs in the alpaca_eval format (instruction, output, generator)."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The config entry the task was built from (hashed into every result row)."""


def resolve_file(value: Any, base_dir: Path, what: str) -> Path:
    """A file named in a config: absolute, or relative to the config's folder."""
    if not isinstance(value, str) or not value:
        raise W2SError(f"{what} must be a file path")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise W2SError(f"{what} {value!r} does not exist (looked for {path})")
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON list or a JSONL file, with clear errors that name the line."""
    import json

    text = read_utf8(path)
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise W2SError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise W2SError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise W2SError(f"{path}: every record must be a JSON object")
    for n, r in enumerate(rows, 1):
        check_text(r, f"{path}: record {n}")
    return rows


def pick_field(row: dict[str, Any], names: Sequence[str], where: str) -> str:
    for n in names:
        if isinstance(row.get(n), str):
            return row[n]
    raise W2SError(f"{where}: no string field {' or '.join(repr(n) for n in names)}")


def build_golds(entries: Any, defaults: Sequence[str], *, dtype: str, device: str,
                base_dir: Path | None = None) -> dict[str, GoldFn]:
    """Gold scorers from a config's ``gold:`` list (names or ``{model: PATH, ...}``)."""
    from w2s.tasks.gold import GOLD_SCORERS

    entries = list(defaults) if entries is None else entries
    if isinstance(entries, (str, dict)):
        entries = [entries]
    if not isinstance(entries, list):
        raise W2SError("gold must be a list of scorer names or {model: PATH} entries")
    golds: dict[str, GoldFn] = {}
    for e in entries:
        if isinstance(e, str):
            if e not in GOLD_SCORERS:
                raise W2SError(f"unknown gold scorer {e!r}; use one of {', '.join(GOLD_SCORERS)} "
                               "or {model: PATH} for a reward model")
            golds[e] = _ignore_prompt(GOLD_SCORERS[e])
        elif isinstance(e, dict) and isinstance(e.get("model"), str):
            unknown = set(e) - {"model", "name", "label", "chat"}
            if unknown:
                raise W2SError(f"unknown gold option(s): {', '.join(sorted(unknown))}")
            from w2s.models.resolve import resolve_model

            path = resolve_model(e["model"], base_dir or Path.cwd())
            golds[e.get("name") or e["model"]] = _reward_model({**e, "model": path}, dtype=dtype,
                                                               device=device)
        else:
            raise W2SError(f"gold entry {e!r}: give a scorer name or {{model: PATH}}")
    return golds


def _ignore_prompt(fn: Callable[[Sequence[str]], list[float]]) -> GoldFn:
    return lambda prompts, responses: fn(responses)


def _reward_model(e: dict[str, Any], *, dtype: str, device: str) -> GoldFn:
    from w2s.guides import RewardModelGuide

    rm = RewardModelGuide.load(e["model"], dtype=dtype, device=device,
                               chat=bool(e.get("chat", False)), label=e.get("label"))
    return lambda prompts, responses: [float(x) for x in rm.score(prompts, responses).tolist()]

"""Resumable results: one JSON line per finished (method, seed, prompt), flushed at once.

Why a plain JSONL: it survives a kill at any instant (at worst the last line is torn, and it is
dropped on the next open), it appends cheaply, and every tool can read it. A row's identity is
``(hash, seed, prompt_index)``: rerunning the same command skips what is done, and a method whose
settings changed gets a new hash, so old rows are never silently counted as new ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.textfile import strict_json

Key = tuple[str, int, int]  # (method hash, seed, prompt index)


def row_key(row: dict[str, Any]) -> Key:
    return (row["hash"], int(row["seed"]), int(row["prompt_index"]))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every complete row of a results file (a torn last line, from a kill, is ignored)."""
    if not path.is_file():
        raise W2SError(f"results file {str(path)!r} does not exist")
    return _parse(path.read_bytes(), path)


def _parse(data: bytes, path: Path) -> list[dict[str, Any]]:
    rows = []
    lines = data.split(b"\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if n == len(lines):  # the last line has no newline: a write cut short
                break
            raise W2SError(f"{path}:{n}: not a JSON row; is this a w2s results file?") from None
        if not isinstance(row, dict):
            raise W2SError(f"{path}:{n}: a JSON {type(row).__name__}, not a row (an object); "
                           "is this a w2s results file?")
        rows.append(row)
    return rows


class ResultStore:
    """Append-only JSONL of result rows with the keys already done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self._repair(path.read_bytes() if path.exists() else b"")
        self.rows = _parse(data, path)
        for n, r in enumerate(self.rows, 1):  # a row of a run names what it is the row of
            bad = [k for k in ("seed", "prompt_index") if "hash" in r and (
                not isinstance(r.get(k), int) or isinstance(r.get(k), bool))]
            if bad:
                raise W2SError(f"{path}: row {n} has no {bad[0]} (an integer); is this a w2s "
                               "results file? Use another --out, or --restart to discard it")
        self.done: set[Key] = {row_key(r) for r in self.rows if "hash" in r}

    def _repair(self, data: bytes) -> bytes:
        """Cut a torn last line (a kill mid-write) so the next append starts on a fresh line."""
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            with self.path.open("r+b") as f:
                f.truncate(len(data))
        return data

    def check_compatible(self, label: str, digest: str) -> None:
        """Refuse to mix: rows under the same label but made with other settings."""
        other = {r.get("hash") for r in self.rows if r.get("method") == label} - {digest}
        if other:
            raise W2SError(
                f"{self.path} already has rows for {label!r} made with other settings "
                f"(hash {sorted(other)[0]} vs {digest} now); use another --out, or --restart "
                "to discard the old results")

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write rows and push them to disk before returning: a kill after this loses none."""
        rows = list(rows)
        if not rows:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(strict_json(r, ensure_ascii=False) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        self.rows += rows
        self.done |= {row_key(r) for r in rows}

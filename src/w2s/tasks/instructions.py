"""Instruction following (the paper's AlpacaEval 2.0 setting, §4.2).

Prompts come from a JSON/JSONL file (alpaca_eval's own format works as is: ``instruction``,
optionally ``input``) or from a ``datasets`` dataset. Responses are also written in the
alpaca_eval format (``instruction``, ``output``, ``generator``) so users can score them with
alpaca_eval; a gold reward model is optional (``gold: [{model: PATH}]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.tasks.base import Task, build_golds, pick_field, read_records, resolve_file

OPTIONS = {"name", "path", "dataset", "config", "split", "field", "gold", "chat"}
FIELDS = ("instruction", "prompt")


def build(spec: dict[str, Any], base_dir: Path, *, dtype: str, device: str) -> Task:
    unknown = set(spec) - OPTIONS
    if unknown:
        raise W2SError(f"unknown option(s) for task instructions: {', '.join(sorted(unknown))}")
    fields = (spec["field"],) if spec.get("field") else FIELDS
    if spec.get("path"):
        path = resolve_file(spec["path"], base_dir, "instructions path")
        rows = read_records(path)
        where = str(path)
    elif spec.get("dataset"):
        rows, where = _from_datasets(spec), f"dataset {spec['dataset']}"
    else:
        raise W2SError("task instructions needs path: FILE.json(l) or dataset: NAME")
    prompts = []
    for n, row in enumerate(rows, 1):
        text = pick_field(row, fields, f"{where} record {n}")
        extra = row.get("input")
        prompts.append(f"{text}\n\n{extra}" if isinstance(extra, str) and extra.strip() else text)
    golds = build_golds(spec.get("gold"), (), dtype=dtype, device=device, base_dir=base_dir)
    return Task("instructions", prompts, golds,
                chat=bool(spec.get("chat", True)), alpaca_eval=True, spec=spec)


def _from_datasets(spec: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise W2SError("task instructions with dataset: needs the datasets package: "
                       "pip install datasets") from None
    try:
        ds = datasets.load_dataset(spec["dataset"], spec.get("config"),
                                   split=spec.get("split", "eval"))
    except Exception as e:  # noqa: BLE001
        raise W2SError(f"could not load dataset {spec['dataset']!r}: "
                       f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
                       ) from None
    return [dict(r) for r in ds]

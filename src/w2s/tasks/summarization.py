"""Summarization (the paper's TL;DR setting, §4.1): documents from a JSONL file, each turned
into a prompt by a template (default ``"{document}\\nTL;DR:"``); the gold reward is a reward
model the user gives (any ``transformers`` sequence-classification model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.tasks.base import Task, build_golds, pick_field, read_records, resolve_file

OPTIONS = {"name", "path", "field", "template", "gold", "chat"}
FIELDS = ("document", "article", "text", "post")
TEMPLATE = "{document}\nTL;DR:"


def build(spec: dict[str, Any], base_dir: Path, *, dtype: str, device: str) -> Task:
    unknown = set(spec) - OPTIONS
    if unknown:
        raise W2SError(f"unknown option(s) for task summarization: {', '.join(sorted(unknown))}")
    if not spec.get("gold"):
        raise W2SError("task summarization needs a gold reward model: gold: [{model: PATH}]")
    path = resolve_file(spec.get("path"), base_dir, "summarization path")
    template = spec.get("template", TEMPLATE)
    if not isinstance(template, str) or "{document}" not in template:
        raise W2SError("summarization template must contain {document}")
    fields = (spec["field"],) if spec.get("field") else FIELDS
    prompts = [template.replace("{document}", pick_field(row, fields, f"{path} record {n}"))
               for n, row in enumerate(read_records(path), 1)]
    return Task("summarization", prompts,
                build_golds(spec["gold"], (), dtype=dtype, device=device, base_dir=base_dir),
                chat=bool(spec.get("chat", False)), spec=spec)

"""Tasks: a prompt source plus the gold scorers a method never sees while searching.

A task is built from the ``task:`` entry of an eval config (see :mod:`w2s.evaluate.config`):
a name (``sentiment``, ``instructions``, ``summarization``) and that task's options. Gold
scorers are named (``vader``, ``textblob``) or any ``transformers`` sequence-classification
model (``{model: PATH}``), so a user can bring the reward model their field trusts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.tasks.base import GoldFn, Task, build_golds, pick_field, read_records, resolve_file

__all__ = ["GoldFn", "Task", "build_golds", "build_task", "pick_field", "read_records",
           "resolve_file"]


def build_task(spec: dict[str, Any], base_dir: Path, *, dtype: str = "auto",
               device: str = "auto") -> Task:
    """The task named by ``spec['name']``, with its prompts loaded and gold scorers ready."""
    from w2s.tasks import instructions, sentiment, summarization

    builders = {"sentiment": sentiment.build, "instructions": instructions.build,
                "summarization": summarization.build}
    name = spec.get("name")
    if name not in builders:
        raise W2SError(f"unknown task {name!r}; choose one of: {', '.join(builders)}")
    task = builders[name](spec, base_dir, dtype=dtype, device=device)
    if not task.prompts:
        raise W2SError(f"task {name!r} has no prompts")
    return task

"""Backends: the base model behind declared capability protocols (``base``).

``HFModel`` and ``OpenAIBackend`` load on first use: the protocols alone import no torch (the
CLI's ``--help`` lists the decoders and what they need without it)."""

from __future__ import annotations

from typing import Any

from w2s.models.base import (
    Backend,
    Continuation,
    LogitsBackend,
    ParamCount,
    PromptCounter,
    Request,
    ScoringLM,
    SearchBackend,
)

_LAZY = {"HFModel": "w2s.models.hf", "OpenAIBackend": "w2s.models.openai_api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Backend", "Continuation", "HFModel", "LogitsBackend", "OpenAIBackend",
           "ParamCount", "PromptCounter", "Request", "ScoringLM", "SearchBackend"]

"""Backends: the base model behind declared capability protocols (``base``)."""

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
from w2s.models.hf import HFModel
from w2s.models.openai_api import OpenAIBackend

__all__ = ["Backend", "Continuation", "HFModel", "LogitsBackend", "OpenAIBackend",
           "ParamCount", "PromptCounter", "Request", "ScoringLM", "SearchBackend"]

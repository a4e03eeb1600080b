"""Backends: the base model behind declared capability protocols (``base``)."""

from w2s.models.base import (
    Backend,
    Continuation,
    LogitsBackend,
    PromptCounter,
    Request,
    ScoringLM,
    SearchBackend,
)
from w2s.models.hf import HFModel
from w2s.models.openai_api import OpenAIBackend

__all__ = ["Backend", "Continuation", "HFModel", "LogitsBackend", "OpenAIBackend",
           "PromptCounter", "Request", "ScoringLM", "SearchBackend"]

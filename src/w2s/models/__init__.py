"""Backends: the base model behind one small interface (``base.Backend``)."""

from w2s.models.base import Backend, Continuation
from w2s.models.hf import HFModel

__all__ = ["Backend", "Continuation", "HFModel"]

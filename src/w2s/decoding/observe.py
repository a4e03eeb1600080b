"""Watching a decode while it runs: the text each prompt has committed, and a way to stop it.

A server streams answers and stops the work of clients that went away; a decoder should not
know about either. So decoders only *report*: :func:`emit` says "prompt ``i``'s answer now
starts with this text" (text the decoder will not take back: a token-level method's sampled
tokens, CBS's prefix shared by every kept beam entry), and :func:`checkpoint` is a point where
the work may be stopped. Both are free when nobody watches (the default). The watcher is set for
the current thread (a :class:`contextvars.ContextVar`) with :func:`watching`, so concurrent
decodes in other threads each have their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Protocol

from w2s.errors import W2SError


class Cancelled(W2SError):
    """Everyone waiting for this decode went away; its work was stopped."""


class Watcher(Protocol):
    def committed(self, index: int, text: str) -> None:
        """Prompt ``index`` (of the decoder call) will answer text starting with ``text``."""

    def cancelled(self) -> bool:
        """True when the decode should stop at the next checkpoint."""


_WATCHER: ContextVar[Watcher | None] = ContextVar("w2s_watcher", default=None)


@contextlib.contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    token = _WATCHER.set(watcher)
    try:
        yield
    finally:
        _WATCHER.reset(token)


def active() -> bool:
    """Whether anyone watches (decoders skip the work of reporting otherwise)."""
    return _WATCHER.get() is not None


def emit(index: int, text: str) -> None:
    w = _WATCHER.get()
    if w is not None:
        w.committed(index, text)


def checkpoint() -> None:
    """Raise :class:`Cancelled` when the watcher says so."""
    w = _WATCHER.get()
    if w is not None and w.cancelled():
        raise Cancelled("the decode was cancelled")


def common_prefix(texts: Sequence[str]) -> str:
    """The longest prefix all ``texts`` share (CBS's committed text)."""
    return os.path.commonprefix(list(texts)) if texts else ""

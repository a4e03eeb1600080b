"""When a response ends, and what its text is.

A response ends at an EOS token, when a stop string appears in its text (the text is cut just
before the stop string), or at ``max_new_tokens`` (not counted as *finished by the model*, but it
ends all the same). The check runs on decoded text, so a stop string split across tokens or
chunks is still found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def first_stop(text: str, stop: Iterable[str]) -> int:
    """Where the first stop string starts in ``text``, or -1."""
    return min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)


class Stopper:
    """Decides, from a response's token ids, whether it ended and what text it shows."""

    def __init__(self, decode: Callable[[list[int]], str], eos_ids: Iterable[int], stop: Iterable[str]):
        self.decode = decode
        self.eos_ids = frozenset(eos_ids)
        self.stop = tuple(stop)

    def text(self, ids: list[int]) -> str:
        """The response text, cut before the first stop string."""
        text = self.decode(ids)
        cut = first_stop(text, self.stop)
        return text if cut < 0 else text[:cut]

    def ended(self, ids: list[int]) -> bool:
        """True when the last token is EOS or the text holds a stop string."""
        if not ids:
            return False
        if ids[-1] in self.eos_ids:
            return True
        if self.stop:
            text = self.decode(ids)
            return any(s in text for s in self.stop)
        return False

    def ended_after(self, prefix: list[int], new: list[int]) -> bool:
        """``ended(prefix + new)`` for a non-empty ``new``, without copying the prefix unless
        a stop string has to be looked for in the text."""
        if new[-1] in self.eos_ids:
            return True
        return bool(self.stop) and self.ended(prefix + new)

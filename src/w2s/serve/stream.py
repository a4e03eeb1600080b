"""Turning "the answer now starts with this text" into stream deltas that are never taken back.

A decoder reports text it will not change (see :mod:`w2s.decoding.observe`), but the *text* of
its tokens can still change at the edge: a stop string split across two steps is cut from the
answer once complete, a multi-byte character arrives over several tokens (U+FFFD until then),
and a detokenizer may drop the space before punctuation that follows. So the tail that could
still change is held back until it cannot, and every chunk sent is final: the chunks reassemble
to the non-streamed answer.
"""

from __future__ import annotations


class Committed:
    """The text sent so far for one choice, and what may be sent next."""

    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self.stop = stop
        self.sent = ""

    def safe(self, text: str) -> str:
        """``text`` without the tail that may still change."""
        cut = len(text)
        for s in self.stop:  # the longest tail that begins a stop string
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    cut = min(cut, len(text) - n)
                    break
        text = text[:cut]
        return text.rstrip("\ufffd").rstrip()

    def delta(self, text: str) -> str:
        """New text to send for a report, or "" (nothing safe and new)."""
        safe = self.safe(text)
        if len(safe) > len(self.sent) and safe.startswith(self.sent):
            out, self.sent = safe[len(self.sent):], safe
            return out
        return ""

    def final(self, text: str) -> str:
        """The rest of the finished answer ``text``. It always extends what was sent, as the
        tail that could change was held back; should a detokenizer ever break that, the rest
        is still sent, and the mismatch is counted by the caller (``ok`` false)."""
        self.ok = text.startswith(self.sent)
        out = text[len(self.sent):] if self.ok else text
        self.sent = text
        return out

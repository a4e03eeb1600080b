"""Time and peak memory of one step, for the report's cost table.

The process's peak resident memory (``ru_maxrss``) only ever grows, so it cannot tell one step
from the last; on Linux, writing 5 to ``/proc/self/clear_refs`` resets the peak (VmHWM), so each
step's own peak is read. Elsewhere the process's peak so far is reported, and said to be so.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _reset_peak() -> bool:
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


@contextlib.contextmanager
def measured() -> Iterator[dict[str, Any]]:
    """``with measured() as m: ...`` fills ``m`` with ``seconds`` and ``peak_mib`` (and
    ``peak_of``: ``step`` where the peak is this step's own, ``process`` where it is not)."""
    own = _reset_peak()
    start = time.perf_counter()
    m: dict[str, Any] = {}
    try:
        yield m
    finally:
        m["seconds"] = round(time.perf_counter() - start, 3)
        m["peak_mib"] = round(_peak_mib(), 1)
        m["peak_of"] = "step" if own else "process"

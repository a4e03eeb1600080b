"""What a command is doing while it loads and decodes, on stderr: the library logs each stage
(``w2s.stage``: loading a model, connecting to an engine, the memory plan, decoding); on a
terminal a rich spinner shows the current one, off a terminal each is one line, so a long
model load or search is never silent and a log file says where the time went."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

LOGGER = "w2s.stage"


class _Lines(logging.Handler):
    """Off a terminal: ``w2s: <stage>`` per stage, with the seconds since the command began."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.t0 = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"w2s: [{time.perf_counter() - self.t0:5.1f} s] "
                         f"{record.getMessage()}\n")
        sys.stderr.flush()


class _Spinner(logging.Handler):
    """On a terminal: the current stage beside a spinner; the memory plan stays printed."""

    def __init__(self, console: Any) -> None:
        super().__init__(logging.INFO)
        self.console = console
        self.status = console.status("starting", spinner="dots")
        self.status.start()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if getattr(record, "keep", False):
            self.console.print(f"[dim]{message}[/dim]", highlight=False)
        self.status.update(message)

    def close(self) -> None:
        self.status.stop()
        super().close()


@contextlib.contextmanager
def shown_stages(enabled: bool = True) -> Iterator[None]:
    """Show ``w2s.stage`` records on stderr for the length of the block (off: nothing)."""
    if not enabled:
        yield
        return
    from rich.console import Console

    console = Console(stderr=True)
    handler: logging.Handler = _Spinner(console) if console.is_terminal else _Lines()
    logger = logging.getLogger(LOGGER)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        handler.close()

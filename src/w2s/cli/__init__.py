"""The ``w2s`` command line: one module per command (``generate``, ``demo``, ``eval`` and
``report``, ``serve``, ``zoo``, ``distill``), each thin: its flags come from the request model
(:mod:`w2s.request`), the knob dataclasses and the decoder registry (:mod:`w2s.cli.options`).

User errors print one line and exit 2; unexpected ones print one line and exit 1
(``W2S_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

from w2s.cli import (  # noqa: F401  (they register)
    demo,
    distill,
    evaluate,
    generalise,
    generate,
    serve,
    zoo,
)
from w2s.cli.group import cli


def main() -> None:
    cli(prog_name="w2s")


__all__ = ["cli", "main"]

"""What a command printed, less the stages it shows while it loads and decodes
(``w2s: [  0.4 s] loading the base ...``): the lines a test reads an error or a result from."""

from __future__ import annotations

import re

STAGE = re.compile(r"w2s: \[ *\d+\.\d s\] ")


def without_stages(output: str) -> str:
    return "".join(x for x in output.splitlines(keepends=True) if not STAGE.match(x))

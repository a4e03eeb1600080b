"""Files a generalise run writes whole or not at all: a kill mid-write leaves the old file
(or none), never half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    from w2s.textfile import strict_json

    write_text(path, strict_json(data, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

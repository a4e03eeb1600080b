"""Reading the text files users hand us, with errors that name the file and the line.

A prompts file saved in Latin-1, or JSON carrying a lone surrogate (``"\\ud800"``, valid JSON,
not valid text), used to surface deep inside a tokenizer as ``unexpected UnicodeDecodeError``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from w2s.errors import W2SError


def read_utf8(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are one line naming the file and line."""
    return decode_utf8(path.read_bytes(), str(path))


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` as text; bytes that are not UTF-8 are one line naming ``name`` (a file, or
    ``<stdin>``) and the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise W2SError(f"{name}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the "
                       "file as UTF-8") from None


def check_text(value: Any, where: str) -> None:
    """Refuse strings (inside lists and dicts too) that cannot be encoded as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise W2SError(f"{where}: {e.reason} in {json.dumps(value)[:40]}; it is not text "
                           "any model can read") from None
    elif isinstance(value, dict):
        for v in value.values():
            check_text(v, where)
    elif isinstance(value, list):
        for v in value:
            check_text(v, where)


def strict_json(value: Any, **kw: Any) -> str:
    """JSON that every parser reads: a non-finite float (a NaN or infinite metric) is written
    as null instead of Python's ``NaN``/``Infinity``, which are not JSON."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), allow_nan=False, **kw)

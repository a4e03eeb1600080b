"""Config files: a YAML or TOML file read into a mapping, or a shipped config found by name.

Every command that takes a config (``w2s eval``, ``w2s serve --config``, ``w2s generalise``)
reads it here, so a file that is not valid YAML or TOML, or not a mapping, is refused the same
way everywhere: one line naming the file (and the line, for YAML).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from w2s.errors import W2SError


def find_config(name_or_path: str, shipped_in: Path, kind: str = "") -> Path:
    """A config file, or the name of a shipped one (``sentiment``, ``instructions``; a
    command with configs of its own names its folder and their ``kind``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    for ext in (".yaml", ".yml", ".toml"):
        shipped = shipped_in / f"{name_or_path}{ext}"
        if shipped.is_file():
            return shipped
    names = sorted(p.stem for p in shipped_in.glob("*.*ml"))
    raise W2SError(f"config {name_or_path!r} is not a file nor a shipped "
                   f"{kind + ' ' if kind else ''}config ({', '.join(names)})")


def read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise W2SError(f"{path}: not valid TOML ({e})") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise W2SError(f"{path}: not valid YAML{line} ({getattr(e, 'problem', e)})") from None
    else:
        raise W2SError(f"{path}: a config is a .yaml, .yml or .toml file")
    if not isinstance(data, dict):
        raise W2SError(f"{path}: the config must be a mapping of keys to values")
    return data

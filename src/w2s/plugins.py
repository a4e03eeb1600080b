"""Plugins: decoders and guide kinds registered by other installed packages.

A package adds to w2s by naming, in its own ``pyproject.toml``, an entry point of the group
``w2s.plugins``::

    [project.entry-points."w2s.plugins"]
    my_search = "my_package.w2s_plugin:register"

The entry point is a function taking no argument (or a module whose import does the work) that
calls :func:`w2s.register` for a decoder and/or :func:`w2s.register_guide_kind` for a guide
kind. Plugins are loaded once, the first time the decoder or guide registry is read, so a
plugin's method reaches every face (``w2s generate --method``, eval configs, the server and its
playground) exactly as a built-in one does -- what vLLM's plugins and ``transformers``'
``custom_generate`` give their users. A plugin that fails to load is one line naming it
(``W2S_PLUGINS=0`` turns plugins off).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from typing import Any, TypeVar

T = TypeVar("T")

GROUP = "w2s.plugins"
_state = {"loaded": False, "loading": False}
LOADED: list[str] = []
"""The names of the entry points loaded so far."""


def load_plugins(*, force: bool = False) -> list[str]:
    """Load every ``w2s.plugins`` entry point once (``force``: look again, e.g. after a
    package was installed at run time); returns the names loaded."""
    if (_state["loaded"] and not force) or _state["loading"]:
        return LOADED
    _state["loaded"] = _state["loading"] = True
    try:
        if os.environ.get("W2S_PLUGINS", "1") == "0":
            return LOADED
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name in LOADED:
                continue
            try:
                obj = ep.load()
                if callable(obj):
                    obj()
            except Exception as e:  # noqa: BLE001 - a broken plugin must not break w2s
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                print(f"w2s: plugin {ep.name!r} ({ep.value}) failed to load: "
                      f"{type(e).__name__}: {first}", file=sys.stderr)
                continue
            LOADED.append(ep.name)
    finally:
        _state["loading"] = False
    return LOADED


class Registry(dict[str, T]):
    """A name -> entry map that plugins can add to: the decoders and the guide kinds. Reading
    it through :meth:`all` loads the installed plugins first."""

    def __init__(self, what: str, reserved: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.what, self.reserved = what, reserved

    def add(self, name: str, entry: T) -> T:
        """Add ``entry``; its name must be new (or the very same entry again)."""
        from w2s.errors import W2SError

        if not name.isidentifier() or name in self.reserved:
            other = f" other than {', '.join(self.reserved)}" if self.reserved else ""
            raise W2SError(f"{self.what} name must be an identifier{other}, got {name!r}")
        old: Any = self.get(name)
        if old is not None and old != entry:
            raise W2SError(f"a {self.what} named {name!r} is already registered")
        self[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Remove an entry (tests and plugins that register temporary ones)."""
        self.pop(name, None)

    def all(self) -> Registry[T]:
        load_plugins()
        return self

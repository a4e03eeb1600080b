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
``custom_generate`` give their users (``W2S_PLUGINS=0`` turns plugins off).

A plugin cannot break w2s. One that fails to load, or that *clashes* -- takes a name already
registered or built in (in any registry: decoders, guide kinds), gives its decoder a knob
named like a sampling field or a request field or typed unlike another decoder's knob of its
name (:func:`w2s.decoding.registry.knob_clash`), or writes to a registry behind its back -- is
disabled: nothing it registered stays, and stderr gets one line naming its package and why::

    w2s: plugin w2s-lucky (lucky = w2s_lucky:register) is disabled: decoder 'lucky': knob 'seed' clashes with the sampling field 'seed'

Every other plugin, and every built-in method, works as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from w2s.errors import W2SError

T = TypeVar("T")

GROUP = "w2s.plugins"
_state: dict[str, Any] = {"loaded": False, "loading": False, "clashes": None}
LOADED: list[str] = []
"""The names of the entry points loaded so far."""
DISABLED: dict[str, str] = {}
"""Entry points that failed to load or clashed: name -> the line said about it."""
REGISTRIES: list[Registry] = []
"""Every registry (decoders, guide kinds, ...): what a plugin may add to and must not clash
with."""


class Clash(W2SError):
    """An entry whose name, or a name it brings (a knob), is taken already."""


def package(ep: EntryPoint) -> str:
    """The distribution an entry point comes from (its module when that is unknown)."""
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value.split(":")[0].split(".")[0]


def load_plugins(*, force: bool = False) -> list[str]:
    """Load every ``w2s.plugins`` entry point once (``force``: look again, e.g. after a
    package was installed at run time); returns the names loaded. A plugin that fails or
    clashes is disabled whole (see the module's docstring)."""
    if (_state["loaded"] and not force) or _state["loading"]:
        return LOADED
    _state["loaded"] = _state["loading"] = True
    try:
        if os.environ.get("W2S_PLUGINS", "1") == "0":
            return LOADED
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name not in LOADED:
                _load_one(ep)
    finally:
        _state["loading"] = False
    return LOADED


def _load_one(ep: EntryPoint) -> None:
    """Run one plugin; keep what it registered only if it loaded without a clash."""
    before = {id(r): dict(r) for r in REGISTRIES}
    _state["clashes"] = clashes = []
    failure = None
    try:
        obj = ep.load()
        if callable(obj):
            obj()
    except Exception as e:  # noqa: BLE001 - a broken plugin must not break w2s
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        failure = f"{type(e).__name__}: {first}" if first else type(e).__name__
    finally:
        _state["clashes"] = None
    for reg in REGISTRIES:
        if id(reg) in before:
            clashes += reg.changes(before[id(reg)])
    if not clashes and failure is None:
        for reg in REGISTRIES:
            for name in reg.keys() - before.get(id(reg), {}).keys():
                reg.owners[name] = package(ep)
        LOADED.append(ep.name)
        DISABLED.pop(ep.name, None)
        return
    for reg in REGISTRIES:  # nothing of it stays
        if id(reg) in before:
            reg.clear()
            reg.update(before[id(reg)])
    why = "; ".join(dict.fromkeys(clashes)) if clashes else f"it failed to load: {failure}"
    DISABLED[ep.name] = line = (f"w2s: plugin {package(ep)} ({ep.name} = {ep.value}) is "
                                f"disabled: {why}")
    print(line, file=sys.stderr)


class Registry(dict[str, T]):
    """A name -> entry map that plugins can add to: the decoders and the guide kinds. Reading
    it through :meth:`all` loads the installed plugins first."""

    def __init__(self, what: str, reserved: tuple[str, ...] = (), *,
                 reserved_as: str = "a reserved name",
                 check: Callable[[T], str | None] | None = None) -> None:
        super().__init__()
        self.what, self.reserved, self.reserved_as = what, reserved, reserved_as
        self.check = check
        """``check(entry)``: what else than its name the entry clashes with, or None."""
        self.owners: dict[str, str] = {}
        """Entries a plugin added: name -> its package."""
        REGISTRIES.append(self)

    def problem(self, name: str, entry: T) -> str | None:
        """What ``entry`` under ``name`` clashes with, or None."""
        if name in self.reserved:
            return f"{self.what} {name!r} clashes with {self.reserved_as} {name!r}"
        old: Any = self.get(name)
        if old is not None and old != entry:
            return f"{self.what} {name!r} clashes with {self.origin(name)}"
        problem = self.check(entry) if self.check is not None else None
        return f"{self.what} {name!r}: {problem}" if problem else None

    def owner(self, name: str) -> str:
        return f"by plugin {self.owners[name]}" if name in self.owners else "built in"

    def origin(self, name: str) -> str:
        return f"the {self.what} of that name already registered ({self.owner(name)})"

    def add(self, name: str, entry: T) -> T:
        """Add ``entry``; its name must be new (or the very same entry again) and must clash
        with nothing (:meth:`problem`)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise W2SError(f"{self.what} name must be an identifier, got {name!r}")
        problem = self.problem(name, entry)
        if problem:
            if _state["clashes"] is not None:  # a plugin is loading: it is disabled whole
                _state["clashes"].append(problem)
            raise Clash(problem)
        self[name] = entry
        return entry

    def changes(self, before: dict[str, T]) -> list[str]:
        """The clashes of what was done to this registry since ``before`` (a plugin may write
        to the dict itself): an entry replaced or removed, a new one that clashes."""
        out = []
        for name, old in before.items():
            if name not in self:
                out.append(f"it removed the {self.what} {name!r} ({self.owner(name)})")
            elif self[name] is not old and self[name] != old:
                out.append(f"{self.what} {name!r} clashes with {self.origin(name)}: it wrote "
                           "over it")
        for name in self.keys() - before.keys():
            problem = (self.problem(name, self[name]) if isinstance(name, str)
                       and name.isidentifier() else f"{self.what} name {name!r} is not an "
                       "identifier")
            if problem:
                out.append(problem)
        return out

    def remove(self, name: str) -> None:
        """Remove an entry (tests and plugins that register temporary ones)."""
        self.pop(name, None)
        self.owners.pop(name, None)

    def all(self) -> Registry[T]:
        load_plugins()
        return self

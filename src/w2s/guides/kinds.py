"""Guide kinds that other code adds: the registry a plugin writes to.

The built-in kinds (a tuned/untuned ``pair``, an autoregressive reward LM ``arm``, a
sequence-classification ``reward_model``) have their own fields in a guide spec
(:class:`~w2s.guides.spec.GuideRef`). Any other kind is registered here once, by a test, a
script or an installed package (entry-point group ``w2s.plugins``), and every face then takes
it: a guide spec names it by its key (``guide: {toy: {target: 3}}`` in a config or a server
request, ``--guide-term toy:'{"target": 3}'`` on the command line) and its knobs are checked
by its knob dataclass, as a decoder's are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from w2s.errors import FieldError
from w2s.plugins import Registry

BUILT_IN = ("tuned", "untuned", "arm", "reward_model", "reward_label", "weights", "normalize")
"""The keys of a guide spec that are not guide kinds of this registry."""


class ModelLoader(Protocol):
    """What a guide kind's ``build`` gets to load models with (the loader's cache, so a
    model named twice is loaded once)."""

    def load_lm(self, ref: str) -> Any:
        """A language model (``zoo:ROLE``, a folder, a hub id) as a scoring backend."""
        ...


@dataclass(frozen=True)
class GuideKind:
    """One kind of guide: its key in a guide spec, its knobs, and how to build it."""

    name: str
    build: Callable[[Any, ModelLoader], Any]
    """``build(knobs, loader) -> Guide``; ``knobs`` is an instance of ``params`` (or None)."""
    summary: str
    params: type | None = None
    """Its knob dataclass (frozen, validated on construction), or None when it has no knobs."""

    def make_params(self, values: Any, where: str) -> Any:
        """The knob dataclass from a mapping (``{}`` or None: its defaults)."""
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise FieldError(where, f"must be a mapping of {self.name}'s knobs, got {values!r}")
        if self.params is None:
            if values:
                raise FieldError(where, f"takes no knobs, got {', '.join(map(str, values))}")
            return None
        known = {f.name for f in dataclasses.fields(self.params)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FieldError(f"{where}.{unknown[0]}", f"is not a knob of guide kind "
                             f"{self.name} (its knobs: {', '.join(sorted(known)) or 'none'})")
        try:
            return self.params(**values)
        except FieldError as e:
            raise e.at(f"{where}.") from None
        except TypeError as e:
            raise FieldError(where, f"is not valid: {e}") from None


GUIDE_KINDS: Registry[GuideKind] = Registry("guide kind", reserved=BUILT_IN,
                                              reserved_as="the guide spec's own key")


def register_guide_kind(kind: GuideKind) -> GuideKind:
    """Add a guide kind; its name must be new (or the very same kind again)."""
    return GUIDE_KINDS.add(kind.name, kind)


def unregister_guide_kind(name: str) -> None:
    GUIDE_KINDS.remove(name)


def guide_kinds() -> dict[str, GuideKind]:
    """The registered guide kinds, plugins included (loaded on first use)."""
    return GUIDE_KINDS.all()

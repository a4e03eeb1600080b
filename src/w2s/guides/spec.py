"""The guide as data: what a user names (models, kinds, weights), checked once, before any
model loads.

Every face writes a guide the same way, as a plain mapping: an eval config's ``guide:``, the
server's settings, the CLI's ``--tuned/--untuned/--arm/--reward-model/--guide-term/--weights/
--normalize`` and the Python API all become a :class:`GuideRef` through :meth:`GuideRef.parse`,
whose errors name the field's path (``guide.weights[1] must be a finite number, got nan``).
:func:`w2s.guides.build.build_guide` turns it into a loaded guide.

The mapping's keys:

- ``tuned`` / ``untuned``: a tuned/untuned pair, or several experts (``tuned`` a list; one
  shared ``untuned`` or one per tuned model);
- ``arm``: autoregressive reward LMs (GenARM), a reference or a list;
- ``reward_model`` (and ``reward_label``): a sequence-classification reward model;
- any registered guide kind's name (:mod:`w2s.guides.kinds`): its knobs, or a list of such
  mappings for several terms;
- ``weights``: one number per term, in the order tuned models, arms, the reward model, then the
  other kinds' terms as written; ``normalize``: raw, per_token or zscore.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from w2s.errors import FieldError
from w2s.guides.base import NORMALIZATIONS
from w2s.guides.kinds import BUILT_IN, guide_kinds


def _refs(value: Any, path: str) -> tuple[str, ...]:
    """One model reference or a non-empty list of them."""
    if isinstance(value, str):
        if not value.strip():
            raise FieldError(path, "must be a model: zoo:ROLE, a folder or a hub id")
        return (value,)
    if isinstance(value, (list, tuple)):
        if not value:
            raise FieldError(path, "is an empty list")
        for i, v in enumerate(value):
            if not isinstance(v, str) or not v.strip():
                raise FieldError(f"{path}[{i}]", "must be a model: zoo:ROLE, a folder or a "
                                 "hub id")
        return tuple(value)
    raise FieldError(path, f"must be a model reference or a list of them, got {value!r}")


def _extra_terms(data: Mapping[str, Any], kinds: Mapping[str, Any], at: str
                 ) -> list[tuple[str, Any]]:
    """The terms of registered guide kinds a mapping names, in registry order: one mapping of
    knobs per term, or a list of them for several."""
    extra: list[tuple[str, Any]] = []
    for name, kind in kinds.items():
        if name in data:
            value = data[name]
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                path = f"{at}{name}" + (f"[{i}]" if isinstance(value, list) else "")
                extra.append((name, kind.make_params(item, path)))
    return extra


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class GuideRef:
    """A guide by name: models as references (``zoo:ROLE``, folders, hub ids), not loaded."""

    tuned: tuple[str, ...] = ()
    untuned: tuple[str, ...] = ()
    arm: tuple[str, ...] = ()
    reward_model: str | None = None
    reward_label: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    """Terms of registered guide kinds: ``(kind name, its knob dataclass)``, in order."""
    weights: tuple[float, ...] | None = None
    normalize: str = "raw"

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, data: Any, where: str = "guide") -> GuideRef | None:
        """The guide a mapping names, or None for no guide (``None`` or ``{}`` without
        weights). ``where`` is the mapping's own path for error messages (``""`` at the top
        level of the Python API)."""
        at = f"{where}." if where else ""
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise FieldError(where or "guide", "must be a mapping: {tuned, untuned}, arm, "
                             "reward_model or a registered guide kind")
        kinds = guide_kinds()
        unknown = sorted(k for k in data if k not in BUILT_IN and k not in kinds)
        if unknown:
            raise FieldError(f"{at}{unknown[0]}", "is not a guide key (known: "
                             f"{', '.join(list(BUILT_IN) + sorted(kinds))})")
        if ("tuned" in data) != ("untuned" in data):
            if where:
                raise FieldError(where, "needs both tuned and untuned (or neither)")
            missing = "untuned" if "tuned" in data else "tuned"
            raise FieldError(missing, "is missing: a tuned model and the untuned model it was "
                             "tuned from go together; give both or neither")
        tuned = _refs(data["tuned"], f"{at}tuned") if "tuned" in data else ()
        untuned = _refs(data["untuned"], f"{at}untuned") if "untuned" in data else ()
        if tuned and len(untuned) not in (1, len(tuned)):
            raise FieldError(f"{at}untuned", f"give one untuned model for all tuned ones, or "
                             f"one per tuned model (got {len(tuned)} tuned, {len(untuned)} "
                             "untuned)", sep=": ")
        arm = _refs(data["arm"], f"{at}arm") if data.get("arm") else ()
        rm = data.get("reward_model")
        if rm is not None:
            rm = _refs(rm, f"{at}reward_model")
            if len(rm) != 1:
                raise FieldError(f"{at}reward_model", "takes one model")
            rm = rm[0]
        label = data.get("reward_label")
        if label is not None and (not isinstance(label, int) or isinstance(label, bool)):
            raise FieldError(f"{at}reward_label", f"must be an integer, got {label!r}")
        extra = _extra_terms(data, kinds, at)
        normalize = data.get("normalize", "raw")
        if normalize is None:
            normalize = "raw"
        if normalize not in NORMALIZATIONS:
            raise FieldError(f"{at}normalize", f"must be one of {', '.join(NORMALIZATIONS)}, "
                             f"got {normalize!r}")
        ref = cls(tuned, untuned, arm, rm, label, tuple(extra), None, normalize)
        weights = data.get("weights")
        if ref.n_terms == 0:
            if weights is not None or normalize != "raw":
                raise FieldError(f"{at}weights", f"and {at}normalize act on the guide's "
                                 "terms; name a tuned/untuned pair, an arm, a reward model or "
                                 "another guide kind")
            return None
        if weights is not None:
            weights = ref.check_weights(weights, f"{at}weights")
        return cls(tuned, untuned, arm, rm, label, tuple(extra), weights, normalize)

    def check_weights(self, weights: Any, path: str = "weights") -> tuple[float, ...]:
        """``weights`` as one finite number per term of this guide."""
        if not isinstance(weights, (list, tuple)) or not all(_number(w) for w in weights):
            raise FieldError(path, f"must be a list of numbers, got {weights!r}")
        for i, w in enumerate(weights):
            if not math.isfinite(w):
                raise FieldError(f"{path}[{i}]", f"must be a finite number, got {w!r}")
        if len(weights) != self.n_terms:
            raise FieldError(path, f"give {self.n_terms} finite numbers ({self.term_order()}),"
                             f" got {list(weights)!r}", sep=": ")
        return tuple(float(w) for w in weights)

    # ------------------------------------------------------------------ what it is
    @property
    def n_terms(self) -> int:
        return (len(self.tuned) + len(self.arm) + (self.reward_model is not None)
                + len(self.extra))

    def term_order(self) -> str:
        parts = ["one per tuned model"] if self.tuned else []
        parts += ["then one per arm"] if self.arm else []
        parts += ["then one for the reward model"] if self.reward_model else []
        parts += [f"then one per {k} term" for k in dict.fromkeys(k for k, _ in self.extra)]
        return ", ".join(parts) if parts else "none"

    @property
    def has_experts(self) -> bool:
        """Terms a token-level method can step (pairs and arms)."""
        return bool(self.tuned or self.arm)

    @property
    def has_text_scorers(self) -> bool:
        """Terms that score text only (a reward model, other guide kinds)."""
        return self.reward_model is not None or bool(self.extra)

    def models(self) -> list[str]:
        """Every model reference it names (to resolve them all before loading any)."""
        return [*self.tuned, *self.untuned, *self.arm,
                *([self.reward_model] if self.reward_model else [])]

    def to_dict(self) -> dict[str, Any]:
        """The mapping :meth:`parse` reads back (one reference as a string, several as a
        list)."""
        def one_or_list(v: tuple[str, ...]) -> Any:
            return v[0] if len(v) == 1 else list(v)

        d: dict[str, Any] = {}
        if self.tuned:
            d["tuned"], d["untuned"] = one_or_list(self.tuned), one_or_list(self.untuned)
        if self.arm:
            d["arm"] = one_or_list(self.arm)
        if self.reward_model:
            d["reward_model"] = self.reward_model
        if self.reward_label is not None:
            d["reward_label"] = self.reward_label
        for name, params in self.extra:
            knobs = dataclasses.asdict(params) if params is not None else {}
            d.setdefault(name, []).append(knobs)
        if self.weights is not None:
            d["weights"] = list(self.weights)
        if self.normalize != "raw":
            d["normalize"] = self.normalize
        return d

"""One way to build a guide from what a user names: a tuned/untuned pair, a reward model, or
a weighted sum of several. The CLI, eval configs and the server all go through :func:`guide_from_spec`,
so the three cannot drift apart."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from w2s.errors import FieldError, W2SError
from w2s.guides.arm import ARMGuide
from w2s.guides.base import Guide, WeightedGuide
from w2s.guides.kinds import guide_kinds
from w2s.guides.pair import PairGuide
from w2s.guides.reward_model import RewardModelGuide
from w2s.guides.spec import GuideRef
from w2s.models.resolve import resolve_model


def parse_weights(text: str | None) -> list[float] | None:
    """``"0.7,0.3"`` -> [0.7, 0.3] (a FieldError naming ``weights`` if it is not that)."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise FieldError("weights", f"takes numbers separated by commas, e.g. 0.7,0.3; got "
                         f"{text!r}") from None


def _as_list(value: Any) -> list[str]:
    """A flag given once or repeated, or a config's string or list, as a list."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def guide_spec(tuned: Any = (), untuned: Any = (), arm: Any = (),
               reward_model: str | None = None, weights: Any = None,
               normalize: str = "raw", terms: dict[str, list[Any]] | None = None
               ) -> dict[str, Any]:
    """The spec for :func:`guide_from_spec` that the options tuned, untuned, arm,
    reward_model, guide_terms (``terms``: ``{kind: [knobs, ...]}``), weights (a list, or
    ``"0.7,0.3"``) and normalize name, checked before anything loads; ``{}`` for no guide.
    The CLI and the server both build their guide here; errors are FieldErrors naming those
    options, which each face names its own way (:meth:`FieldError.named`)."""
    tuned, untuned, arm = _as_list(tuned), _as_list(untuned), _as_list(arm)
    if isinstance(weights, str):
        weights = parse_weights(weights)
    spec: dict[str, Any] = {k: v for k, v in (("tuned", tuned), ("untuned", untuned)) if v}
    if arm:
        spec["arm"] = arm
    if reward_model:
        spec["reward_model"] = reward_model
    spec.update(terms or {})
    if not spec:
        if weights is not None or normalize != "raw":
            raise FieldError("weights" if weights is not None else "normalize", "acts on the "
                             "guide's terms; give a tuned/untuned pair or a reward model")
        return spec
    if weights is not None:
        spec["weights"] = weights
    spec["normalize"] = normalize
    GuideRef.parse(spec, where="")  # every value checked before anything loads
    return spec


def parse_guide_terms(terms: tuple[str, ...]) -> dict[str, list[Any]]:
    """``KIND[:JSON]`` values (the option guide_terms) as a guide spec's
    ``{kind: [knobs, ...]}``."""
    out: dict[str, list[Any]] = {}
    for term in terms:
        kind, _, text = term.partition(":")
        try:
            knobs = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise FieldError("guide_terms", f"{term!r}: the knobs after '{kind}:' are not a "
                             f"JSON object ({e.msg})") from None
        out.setdefault(kind, []).append(knobs)
    return out


class _Loader:
    """The :class:`~w2s.guides.kinds.ModelLoader` a guide kind's ``build`` gets: the caller's
    ``load_lm``, each reference loaded once."""

    def __init__(self, load_lm: Callable[[str], Any]) -> None:
        self._load, self._loaded = load_lm, {}

    def load_lm(self, ref: str) -> Any:
        if ref not in self._loaded:
            self._loaded[ref] = self._load(ref)
        return self._loaded[ref]


def build_guide(ref: GuideRef | None, *, load_lm: Callable[[str], Any], dtype: str = "auto",
                device: str = "auto", chat: bool = False, base_dir: Path | None = None
                ) -> Guide | None:
    """The loaded guide a :class:`~w2s.guides.spec.GuideRef` names (None for none).

    Experts tuned from one small model share it (loaded once, so token-level methods step it
    once per token); ``load_lm`` loads a language model (the caller's cache); the guide is
    ``sum_i w_i * term_i`` when it has several terms or weights, else its one term."""
    if ref is None:
        return None
    loader = _Loader(load_lm)
    terms: list[Guide] = []
    shared = ref.untuned * len(ref.tuned) if len(ref.untuned) == 1 else ref.untuned
    terms += [PairGuide(loader.load_lm(t), loader.load_lm(u)) for t, u in zip(ref.tuned, shared)]
    terms += [ARMGuide(loader.load_lm(a)) for a in ref.arm]  # GenARM, one term each
    if ref.reward_model:
        terms.append(RewardModelGuide.load(resolve_model(ref.reward_model, base_dir),
                                           dtype=dtype, device=device, chat=chat,
                                           label=ref.reward_label))
    kinds = guide_kinds()
    for name, knobs in ref.extra:
        guide = kinds[name].build(knobs, loader)
        if not isinstance(guide, Guide):
            raise W2SError(f"guide kind {name!r} built a {type(guide).__name__}, not a Guide")
        terms.append(guide)
    if ref.weights is None and len(terms) == 1 and ref.normalize == "raw":
        return terms[0]
    weights = ref.weights if ref.weights is not None else (1.0,) * len(terms)
    return WeightedGuide(list(zip(weights, terms)), ref.normalize)


def guide_from_spec(spec: Mapping[str, Any] | None, *, load_lm: Callable[[str], Any],
                    dtype: str = "auto", device: str = "auto", chat: bool = False,
                    base_dir: Path | None = None) -> Guide | None:
    """:func:`build_guide` of the mapping ``spec`` (see :mod:`w2s.guides.spec` for its keys),
    checked by :meth:`GuideRef.parse` first."""
    return build_guide(GuideRef.parse(spec or None, where=""), load_lm=load_lm, dtype=dtype,
                       device=device, chat=chat, base_dir=base_dir)

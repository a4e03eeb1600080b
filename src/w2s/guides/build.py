"""One way to build a guide from what a user names: a tuned/untuned pair, a reward model, or
a weighted sum of several. The CLI, eval configs and the server all go through :func:`guide_from_spec`,
so the three cannot drift apart."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.guides.arm import ARMGuide
from w2s.guides.base import Guide, WeightedGuide
from w2s.guides.pair import PairGuide
from w2s.guides.reward_model import RewardModelGuide
from w2s.models.refs import resolve_model


def parse_weights(text: str | None) -> list[float] | None:
    """``--weights 0.7,0.3`` -> [0.7, 0.3] (one line naming the flag if it is not that)."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise W2SError(f"--weights takes numbers separated by commas, e.g. 0.7,0.3; got "
                       f"{text!r}") from None


def _as_list(value: Any) -> list[str]:
    """A flag given once or repeated, or a config's string or list, as a list."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def guide_spec(tuned: Any = (), untuned: Any = (), arm: Any = (),
               reward_model: str | None = None, weights: Any = None,
               normalize: str = "raw") -> dict[str, Any]:
    """The spec for :func:`guide_from_spec` that the flags --tuned, --untuned, --arm,
    --reward-model, --weights (a list, or ``"0.7,0.3"``) and --normalize name, checked before
    anything loads; ``{}`` for no guide. The CLI and the server both build their guide here."""
    tuned, untuned, arm = _as_list(tuned), _as_list(untuned), _as_list(arm)
    if bool(tuned) != bool(untuned):
        raise W2SError("--tuned and --untuned go together: give both or neither")
    if isinstance(weights, str):
        weights = parse_weights(weights)
    spec: dict[str, Any] = {"tuned": tuned, "untuned": untuned} if tuned else {}
    if arm:
        spec["arm"] = arm
    if reward_model:
        spec["reward_model"] = reward_model
    if not spec:
        if weights is not None or normalize != "raw":
            raise W2SError("--weights and --normalize act on the guide's terms; give "
                           "--tuned/--untuned or --reward-model")
        return spec
    if weights is not None:
        spec["weights"] = weights
    spec["normalize"] = normalize
    return spec


def _refs(value: Any, name: str) -> list[str]:
    refs = [value] if isinstance(value, str) else list(value or [])
    if not refs or not all(isinstance(r, str) and r for r in refs):
        raise W2SError(f"{name} must be a model reference or a list of them, got {value!r}")
    return refs


def guide_from_spec(spec: Mapping[str, Any] | None, *, load_lm: Callable[[str], Any],
                    dtype: str = "auto", device: str = "cpu", chat: bool = False,
                    base_dir: Path | None = None) -> Guide | None:
    """``spec``: ``tuned`` and ``untuned`` (model references, loaded with ``load_lm`` so a
    caller can share loaded models), ``arm`` (autoregressive reward LMs, GenARM), and/or
    ``reward_model`` (with ``reward_label``).

    Several experts: ``tuned`` is a list, ``untuned`` one reference they were all tuned from
    (loaded once and shared, so token-level methods step it once per token) or one per tuned
    model, and ``weights`` one per expert (then one more for the reward model, if any); the
    guide is then ``sum_i w_i * pair_i (+ w * reward model)``, its terms put on one scale by
    ``normalize`` (raw, per_token, zscore: :class:`~w2s.guides.base.WeightedGuide`)."""
    if not spec:
        return None
    if ("tuned" in spec) != ("untuned" in spec):
        raise W2SError("tuned and untuned go together: give both or neither")
    n_arms = len(_refs(spec["arm"], "arm")) if spec.get("arm") else 0
    terms: list[Guide] = []
    if "tuned" in spec:
        tuned, untuned = _refs(spec["tuned"], "tuned"), _refs(spec["untuned"], "untuned")
        if len(untuned) not in (1, len(tuned)):
            raise W2SError(f"give one untuned model for all tuned ones, or one per tuned model "
                           f"(got {len(tuned)} tuned, {len(untuned)} untuned)")
        loaded: dict[str, Any] = {}

        def lm(ref: str) -> Any:
            if ref not in loaded:
                loaded[ref] = load_lm(ref)
            return loaded[ref]
        shared = untuned * len(tuned) if len(untuned) == 1 else untuned
        terms += [PairGuide(lm(t), lm(u)) for t, u in zip(tuned, shared)]
    if spec.get("arm"):  # autoregressive reward LMs (GenARM), one term each
        terms += [ARMGuide(load_lm(ref)) for ref in _refs(spec["arm"], "arm")]
    if spec.get("reward_model"):
        terms.append(RewardModelGuide.load(resolve_model(spec["reward_model"], base_dir),
                                           dtype=dtype, device=device, chat=chat,
                                           label=spec.get("reward_label")))
    weights, normalize = spec.get("weights"), spec.get("normalize", "raw")
    if not terms:  # nothing to weigh: no guide
        if weights is not None or normalize != "raw":
            raise W2SError("weights and normalize act on the guide's terms; name a tuned/"
                           "untuned pair, an arm or a reward model")
        return None
    if weights is None:
        if len(terms) == 1 and normalize == "raw":
            return terms[0]
        weights = [1.0] * len(terms)
    weights = list(weights)
    if len(weights) != len(terms) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
            for w in weights):
        raise W2SError(f"weights: give {len(terms)} finite numbers (one per tuned model"
                       f"{', then one per arm' if n_arms else ''}"
                       f"{', then one for the reward model' if spec.get('reward_model') else ''}"
                       f"), got {weights!r}")
    return WeightedGuide([(float(w), g) for w, g in zip(weights, terms)], normalize)

"""One way to build a guide from what a user names: a tuned/untuned pair, a reward model, or
their sum. The CLI, eval configs and (next) the server all go through :func:`guide_from_spec`,
so the three cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.guides.base import Guide
from w2s.guides.pair import PairGuide
from w2s.guides.reward_model import RewardModelGuide
from w2s.models.refs import resolve_model


def guide_from_spec(spec: Mapping[str, Any] | None, *, load_lm: Callable[[str], Any],
                    dtype: str = "auto", device: str = "cpu", chat: bool = False,
                    base_dir: Path | None = None) -> Guide | None:
    """``spec``: ``tuned`` and ``untuned`` (model references, loaded with ``load_lm`` so a
    caller can share loaded models), and/or ``reward_model`` (with ``reward_label``)."""
    if not spec:
        return None
    if ("tuned" in spec) != ("untuned" in spec):
        raise W2SError("tuned and untuned go together: give both or neither")
    guide: Guide | None = None
    if "tuned" in spec:
        guide = PairGuide(load_lm(spec["tuned"]), load_lm(spec["untuned"]))
    if spec.get("reward_model"):
        rm = RewardModelGuide.load(resolve_model(spec["reward_model"], base_dir), dtype=dtype,
                                   device=device, chat=chat, label=spec.get("reward_label"))
        guide = rm if guide is None else guide + rm
    return guide

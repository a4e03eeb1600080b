"""The statistics every report uses: means and standard errors over prompts (a prompt's seeds
averaged first: prompts, not rows, are the independent samples), and paired differences."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from w2s.plots import mean_se


def prompt_mean_se(sel: Sequence[dict[str, Any]], value: Any) -> tuple[float, float] | None:
    """Mean and standard error over prompts: each prompt's seeds are averaged first (a prompt's
    outputs are correlated, so prompts, not rows, are the independent samples)."""
    per_prompt: dict[int, list[float]] = {}
    for r in sel:
        v = value(r)
        if v is not None:
            per_prompt.setdefault(r["prompt_index"], []).append(v)
    if not per_prompt:
        return None
    return mean_se([statistics.fmean(vs) for vs in per_prompt.values()])


def paired_difference(rows: Sequence[dict[str, Any]], a: str, b: str, gold: str
                      ) -> dict[str, float] | None:
    """Gold reward of method ``a`` minus method ``b`` (labels), paired on (prompt, seed): each
    pair's difference, averaged over a prompt's seeds, then mean ± standard error over prompts.
    ``z`` = mean / SE. None when the two share no (prompt, seed) with a gold value."""
    val: dict[tuple[str, int, Any], float] = {}
    for r in rows:
        g = r["gold"].get(gold)
        if r["method"] in (a, b) and g is not None:
            val[(r["method"], r["prompt_index"], r["seed"])] = g
    per_prompt: dict[int, list[float]] = {}
    for (m, p, s), g in val.items():
        if m == a and (b, p, s) in val:
            per_prompt.setdefault(p, []).append(g - val[(b, p, s)])
    if not per_prompt:
        return None
    mean, se = mean_se([statistics.fmean(d) for d in per_prompt.values()])
    return {"mean": mean, "se": se, "z": mean / se if se > 0 else float("inf"),
            "prompts": len(per_prompt), "pairs": sum(map(len, per_prompt.values()))}


def prompt_jackknife(sel: Sequence[dict[str, Any]], stat: Callable[[Sequence[dict[str, Any]]],
                                                                    float]
                     ) -> tuple[float, float]:
    """A statistic of the rows as a whole (one with no per-prompt value, such as distinct-2
    over every response) and its leave-one-prompt-out jackknife standard error: prompts, as
    everywhere, are the independent samples. For a paired difference of two methods, give the
    rows of both and a ``stat`` that takes the difference: each prompt leaves both at once."""
    full = stat(sel)
    prompts = sorted({r["prompt_index"] for r in sel})
    n = len(prompts)
    if n < 2:
        return full, 0.0
    loo = [stat([r for r in sel if r["prompt_index"] != p]) for p in prompts]
    m = statistics.fmean(loo)
    return full, math.sqrt((n - 1) / n * sum((x - m) ** 2 for x in loo))

"""Figures from result rows (the JSONL that runs write): a person would rather look than read."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else 0.0
    return m, se


def plot_methods(rows: Sequence[dict], path: Path, *, reward: str = "gold",
                 cost: str = "base_tokens", title: str = "") -> Path:
    """Two panels: mean reward per method with standard-error bars; reward vs cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    stats = {m: mean_se([r[reward] for r in rows if r["method"] == m]) for m in methods}
    costs = {m: statistics.fmean(r[cost] for r in rows if r["method"] == m) for m in methods}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = [plt.cm.tab10(i % 10) for i in range(len(methods))]
    ax1.barh(range(len(methods)), [stats[m][0] for m in methods],
             xerr=[stats[m][1] for m in methods], color=colors, capsize=4)
    ax1.set_yticks(range(len(methods)), methods)
    ax1.invert_yaxis()
    ax1.set_xlabel(f"{reward} reward (mean ± s.e.)")
    ax1.axvline(0, color="grey", lw=0.8)
    shown = [m for m in methods if costs[m] > 0]  # zero cost has no place on a log axis
    for m, c in zip(methods, colors):
        if m in shown:
            ax2.errorbar(costs[m], stats[m][0], yerr=stats[m][1], fmt="o", color=c, label=m,
                         capsize=4)
    ax2.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    lo, hi = min(costs[m] for m in shown), max(costs[m] for m in shown)
    nice = [v * 10**e for e in range(0, 8) for v in (1, 2, 5)]
    ticks = [t for t in nice if lo / 1.5 <= t <= hi * 1.5] or [lo, hi]
    ax2.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel(f"{cost.replace('_', ' ')} per prompt (log scale)")
    ax2.set_ylabel(f"{reward} reward")
    ax2.legend(fontsize=8, loc="best")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

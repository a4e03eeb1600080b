"""Figures from result rows (the JSONL that runs write): a person would rather look than read."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else 0.0
    return m, se


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:  # noqa: ANN001
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _point_label(label: str, family: str) -> str:
    """A sweep point's short name: ``cbs(w=4,k=4,l=5)`` -> ``4,4,5``; ``bon(n=16)`` -> ``n=16``."""
    inner = label.replace(family, "").strip().strip("()") or label
    return re.sub(r"\w+=", "", inner) if "," in inner else inner


def plot_frontier(summary: Sequence[dict], path: Path, *, gold: str, x: str = "kl",
                  title: str = "") -> Path:
    """Gold reward against KL from the base (the paper's frontier view) or against compute.

    Points of one sweep (a method *family*) are joined in order of ``x``; hollow markers mean
    the KL is an upper bound (Best-of-N, CBS), filled ones an exact value.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    families = list(dict.fromkeys(s["family"] for s in summary))
    markers = "osD^v<>pP*X"
    plotted = 0
    for n, fam in enumerate(families):
        color, marker = plt.cm.tab10(n % 10), markers[n % len(markers)]
        pts = []
        for s in summary:
            if s["family"] != fam or s["gold"].get(gold) is None:
                continue
            xv = s["kl"][0] if x == "kl" and s["kl"] is not None else s.get(x) if x != "kl" else None
            if xv is None or (x != "kl" and xv <= 0):
                continue
            pts.append((xv, s["gold"][gold][0], s["gold"][gold][1], s))
        if not pts:
            continue
        pts.sort(key=lambda p: p[0])
        if len(pts) > 1:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, lw=1, alpha=0.6)
        for i, (xv, y, se, s) in enumerate(pts):
            bound = x == "kl" and s["kl_kind"] == "bound"
            ax.errorbar(xv, y, yerr=se, fmt=marker, color=color, capsize=3, ms=7,
                        mfc="white" if bound else color, mew=1.5)
            if len(pts) > 1:
                ax.annotate(_point_label(s["method"], fam), (xv, y),
                            textcoords="offset points", xytext=(6, -11 if i % 2 else 5),
                            fontsize=7, color=color)  # alternate sides: neighbours stay legible
        ax.plot([], [], marker, color=color, label=fam)
        plotted += 1
    if x == "kl":
        ax.set_xlabel("KL from the base (nats; hollow = upper bound)")
    else:
        ax.set_xscale("log")
        ax.set_xlabel(f"{x.replace('_', ' ')} per prompt (log scale)")
    ax.set_ylabel(f"gold reward: {gold} (mean ± s.e.)")
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def plot_tradeoff(summary: Sequence[dict], path: Path, *, x: str, y: str,
                  title: str = "") -> Path:
    """Two objectives against each other: each method's mean gold ``x`` and gold ``y`` with
    standard errors, the points of one sweep (e.g. the weights between two experts) joined in
    sweep order, so each family draws its trade-off front."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    markers = "osD^v<>pP*X"
    families = list(dict.fromkeys(s["family"] for s in summary))
    for n, fam in enumerate(families):
        color, marker = plt.cm.tab10(n % 10), markers[n % len(markers)]
        pts = [s for s in summary if s["family"] == fam and s["gold"].get(x) is not None
               and s["gold"].get(y) is not None]
        if not pts:
            continue
        xs, ys = [s["gold"][x][0] for s in pts], [s["gold"][y][0] for s in pts]
        if len(pts) > 1:
            ax.plot(xs, ys, color=color, lw=1, alpha=0.6)
        for i, s in enumerate(pts):
            ax.errorbar(xs[i], ys[i], xerr=s["gold"][x][1], yerr=s["gold"][y][1], fmt=marker,
                        color=color, capsize=3, ms=7)
            if len(pts) > 1:
                ax.annotate(_point_label(s["method"], fam), (xs[i], ys[i]),
                            textcoords="offset points", xytext=(6, -11 if i % 2 else 5),
                            fontsize=7, color=color)
        ax.plot([], [], marker, color=color, label=fam)
    ax.set_xlabel(f"gold: {x} (mean ± s.e.)")
    ax.set_ylabel(f"gold: {y} (mean ± s.e.)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def plot_bars(summary: Sequence[dict], path: Path, *, title: str = "") -> Path:
    """Per-method gold reward with standard-error bars, one panel per gold scorer; the best
    method of each panel is outlined so a reader sees the winner at a glance."""
    plt = _pyplot()
    golds = list(dict.fromkeys(g for s in summary for g in s["gold"]))
    fig, axes = plt.subplots(1, max(1, len(golds)), figsize=(5.5 * max(1, len(golds)),
                                                             0.45 * len(summary) + 1.8),
                             squeeze=False)
    names = [s["method"] for s in summary]
    families = list(dict.fromkeys(s["family"] for s in summary))  # same colours as the frontier
    colors = [plt.cm.tab10(families.index(s["family"]) % 10) for s in summary]
    for ax, g in zip(axes[0], golds):
        has = [g in s["gold"] and s["gold"][g] is not None for s in summary]
        means = [s["gold"][g][0] if h else 0.0 for s, h in zip(summary, has)]
        errs = [s["gold"][g][1] if h else 0.0 for s, h in zip(summary, has)]
        bars = ax.barh(range(len(summary)), means, xerr=errs, color=colors, capsize=3)
        for bar, h in zip(bars, has):  # a method without this scorer gets no bar, not a 0
            bar.set_visible(h)
        best = max((i for i, h in enumerate(has) if h), key=means.__getitem__)
        bars[best].set_edgecolor("black")
        bars[best].set_linewidth(2)
        ax.set_yticks(range(len(summary)), names, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"gold: {g} (mean ± s.e.)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_budget(table: dict, path: Path, *, title: str = "", spent: bool = False) -> Path:
    """Gold reward against the budget (responses' worth of base tokens, log scale), one line
    per method with a band of ± one standard error; with ``spent``, against the base tokens
    each method really spent per prompt instead of its cap (Best-of-N's samples end early, so
    at a cap it spends less than the searches do; Best-of-N drawn bold)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for n, line in enumerate(table["lines"]):
        cells = table["cells"].get(line, {})
        pts = sorted((c["base_tokens"] if spent else b, c["gold"]) for b, c in cells.items()
                     if c["gold"] and (not spent or c["base_tokens"] > 0))
        if not pts:
            continue
        xs, ms, ses = [x for x, _ in pts], [g[0] for _, g in pts], [g[1] for _, g in pts]
        color = plt.cm.tab10(n % 10)
        ax.plot(xs, ms, marker="o", color=color, label=line,
                linewidth=2.5 if spent and line == "bon" else 1.5)
        ax.fill_between(xs, [m - s for m, s in zip(ms, ses)], [m + s for m, s in zip(ms, ses)],
                        color=color, alpha=0.15)
    ax.set_xscale("log", base=2)
    if spent:
        ax.set_xlabel("base tokens spent per prompt (log scale)")
    else:
        ax.set_xticks(table["budgets"], [str(b) for b in table["budgets"]])
        ax.set_xlabel("budget: base tokens per prompt, in responses")
    ax.set_ylabel(f"gold reward ({table['gold']})")
    ax.set_title(title or ("Alignment against the compute really spent" if spent
                           else "Alignment at equal compute"))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_pgr(pgr: dict, path: Path, *, title: str = "", level: float = 0.95) -> Path:
    """Performance gap recovered of each weak-to-strong method, with its bootstrap interval
    (0: no better than the weak supervisor; 1: as good as the ceiling)."""
    plt = _pyplot()
    rows = pgr["students"]
    names = [s.removeprefix("student-") for s in rows]
    vals = [rows[s]["pgr"]["value"] for s in rows]
    lo = [rows[s]["pgr"]["value"] - rows[s]["pgr"]["low"] for s in rows]
    hi = [rows[s]["pgr"]["high"] - rows[s]["pgr"]["value"] for s in rows]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(names) + 2), 4))
    ax.bar(range(len(names)), vals, yerr=[lo, hi], capsize=4, color=plt.cm.tab10(0))
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(f"PGR (bars: {level:.0%} interval)")
    g = pgr["gap"]
    ax.set_title((title + "\n" if title else "")
                 + f"ceiling − weak {g['value']:+.3f} ± {g['se']:.3f}", fontsize=9)
    return _save(plt, fig, path)


def plot_sizes(report: dict, path: Path, *, title: str = "") -> Path:
    """Test accuracy against model size: trained on ground truth, and trained on the weak
    supervisor's labels."""
    plt = _pyplot()
    s, n = report["scores"], report["parameters"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    gt = [(n[r], s[m]["accuracy"]["mean"]) for r, m in
          (("weak", "weak"), ("intermediate", "intermediate-gt"), ("strong", "ceiling"))
          if r in n and m in s]
    ws = [(n[r], s[m]["accuracy"]["mean"]) for r, m in
          (("intermediate", "intermediate-naive"), ("strong", "student-naive"))
          if r in n and m in s]
    ax.plot(*zip(*gt), "o-", label="trained on ground truth")
    if ws:
        ax.plot(*zip(*ws), "s--", label="trained on the weak labels (naive)")
    for m in s:
        if m.startswith("student-") and m != "student-naive":
            ax.plot(n["strong"], s[m]["accuracy"]["mean"], "x", ms=8)
            ax.annotate(m.removeprefix("student-"), (n["strong"], s[m]["accuracy"]["mean"]),
                        fontsize=7, xytext=(4, 0), textcoords="offset points")
    ax.axhline(s["weak"]["accuracy"]["mean"], color="grey", lw=0.8, ls=":",
               label="the weak supervisor")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def plot_deception(split: dict, path: Path, *, title: str = "") -> Path:
    """Each model's accuracy where the weak supervisor is right and where it is wrong."""
    plt = _pyplot()
    models = [m for m in split if m != "weak_right_share"]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(models) + 2), 4))
    for k, part in enumerate(("weak_right", "weak_wrong")):
        v = [split[m][part]["value"] for m in models]
        err = [[split[m][part]["value"] - split[m][part]["low"] for m in models],
               [split[m][part]["high"] - split[m][part]["value"] for m in models]]
        ax.bar([i + 0.4 * k for i in range(len(models))], v, 0.4, yerr=err, capsize=3,
               label=f"where the weak supervisor is {part.split('_')[1]}")
    ax.set_xticks([i + 0.2 for i in range(len(models))],
                  [m.removeprefix("student-") for m in models], fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def plot_overopt(table: dict, path: Path, *, title: str = "") -> Path:
    """One panel per method: the guide's score of the chosen answers (black, left axis) and
    each gold scorer (right axis) against the budget, a star at each scorer's peak, the KL
    estimate written at each point: where the guide keeps rising and gold does not, the guide
    is being over-optimised."""
    plt = _pyplot()
    lines = table["lines"]
    cols = min(3, max(1, len(lines)))
    rows_n = -(-len(lines) // cols) if lines else 1
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.6 * rows_n), squeeze=False)
    for ax, line in zip(axes.flat, lines):
        pts = line["points"]
        xs = [p["budget"] for p in pts]
        guide = [p["guide"][0] if p["guide"] else math.nan for p in pts]
        ax.plot(xs, guide, color="black", linestyle="--", marker=".", label="guide score")
        for p, g in zip(pts, guide):
            if p["kl"] is not None and not math.isnan(g):
                ax.annotate(f"KL {p['kl'][0]:.1f}", (p["budget"], g), fontsize=6,
                            textcoords="offset points", xytext=(0, 5), ha="center")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("budget (responses)")
        ax.set_ylabel("guide score")
        twin = ax.twinx()
        for n, g in enumerate(table["golds"]):
            ms = [p["gold"][g][0] if p["gold"][g] else math.nan for p in pts]
            color = plt.cm.tab10(n % 10)
            twin.plot(xs, ms, marker="o", color=color, label=g)
            peak = line["peaks"].get(g)
            if peak is not None:
                twin.plot([peak["budget"]], [peak["gold"]], marker="*", markersize=14,
                          color=color, markeredgecolor="black")
        twin.set_ylabel("gold")
        ax.set_title(line["line"], fontsize=9)
        ax.grid(alpha=0.3)
        if ax is axes.flat[0]:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = twin.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(lines):]:
        ax.axis("off")
    fig.suptitle(title or "Guide score against gold as the budget grows (★ = gold's peak)")
    return _save(plt, fig, path)

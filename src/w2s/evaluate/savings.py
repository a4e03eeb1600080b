"""Compute saved at equal gold: for each search at each budget, the base tokens (FLOPs, wall
time) Best-of-N needs to reach the same gold, read off Best-of-N's own curve, and the saving
factor ``Best-of-N's cost / the method's cost`` with a bootstrap interval over prompts.

Why not compare at the budget *cap*: Best-of-N's samples end early (at 16x on the zoo it spends
425 of its 640 allowed tokens), so the cap flatters it less than the tokens it really spent.
Every cost here is what the rows say was spent (``base_tokens``, ``flops``, ``wall_time_s``).

Reading the curve: Best-of-N's points (mean spent cost, mean gold), in order of cost; the cost
needed for gold ``g`` is found at the *first* point whose gold reaches ``g``, interpolated
linearly in log cost between it and the point before (gold grows about linearly in log N). A
gold above every Best-of-N point is *censored above*: the factor is at least
``max cost / method cost`` (shown ``>``); one below the cheapest point is censored below
(shown ``<=``, the cheapest point's cost used). The interval resamples prompts (a prompt's
seeds stay together, every method and budget resampled with the same prompts, so the pairing
across methods is kept) and recomputes everything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from w2s.evaluate.stats import paired_difference

COSTS = ("base_tokens", "flops", "wall_time_s")
"""The cost axes a saving is reported on (the rows' own fields)."""


def per_prompt(rows: Sequence[dict[str, Any]], gold: str) -> dict[str, dict[int, dict[str, float]]]:
    """Per budgeted method label and prompt: the seeds' mean gold and costs (prompts whose
    rows lack the gold are left out)."""
    acc: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        if r.get("budget") is None or r["gold"].get(gold) is None:
            continue
        acc.setdefault(r["method"], {}).setdefault(r["prompt_index"], []).append(r)
    return {label: {p: {"gold": statistics.fmean(x["gold"][gold] for x in rs),
                        **{c: statistics.fmean(float(x.get(c) or 0.0) for x in rs)
                           for c in COSTS}}
                    for p, rs in by_p.items()}
            for label, by_p in acc.items()}


def cost_for_gold(curve: Sequence[tuple[float, float]], g: float) -> tuple[float, str | None]:
    """The cost Best-of-N needs for gold ``g``: ``curve`` is its (cost, gold) points in order
    of cost; returns (cost, censoring) with censoring None, ``"above"`` (no point reaches
    ``g``: the largest cost, a lower bound) or ``"below"`` (the cheapest point already beats
    ``g``: its cost, an upper bound)."""
    if g <= curve[0][1]:
        return curve[0][0], ("below" if g < curve[0][1] else None)
    for (c0, g0), (c1, g1) in zip(curve, curve[1:]):
        if g1 >= g:
            if g1 <= g0 or c0 <= 0 or c1 <= 0:
                return c1, None
            frac = (g - g0) / (g1 - g0)
            return math.exp(math.log(c0) + frac * (math.log(c1) - math.log(c0))), None
    return curve[-1][0], "above"


def _vectors(data: dict[str, dict[int, dict[str, float]]], label: str, prompts: list[int]
             ) -> dict[str, Any]:
    import numpy as np

    return {k: np.array([data[label][p][k] for p in prompts]) for k in ("gold", *COSTS)}


def _factors(bon: list[dict[str, Any]], cell: dict[str, Any], weights: Any
             ) -> dict[str, list[tuple[float, str | None]]]:
    """Per cost axis, per row of ``weights`` (prompt weights: ones for the point estimate,
    counts for a bootstrap draw): (saving factor, censoring) of one method's per-prompt
    vectors ``cell`` against Best-of-N's ``bon`` (its curve)."""
    total = weights.sum(axis=1)
    mean = {k: weights @ v / total for k, v in cell.items()}
    pts = [{k: weights @ v / total for k, v in b.items()} for b in bon]
    out: dict[str, list[tuple[float, str | None]]] = {}
    for c in COSTS:
        out[c] = []
        for i in range(weights.shape[0]):
            curve = sorted((float(p[c][i]), float(p["gold"][i])) for p in pts)
            need, cens = cost_for_gold(curve, float(mean["gold"][i]))
            own = float(mean[c][i])
            out[c].append((need / own if own > 0 else math.inf, cens))
    return out


def _quantile(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` by the nearest rank (works with infinities)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def savings_table(rows: Sequence[dict[str, Any]], gold: str, *, draws: int = 1000,
                  level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Every budgeted search's saving factor against Best-of-N's curve on ``gold``, per cost
    axis, with a bootstrap interval; and the headline: the searches that spend at most 1/8 of
    the largest Best-of-N's base tokens, each one's paired gold difference from it. Prompts
    are those every method and budget has."""
    import numpy as np

    data = per_prompt(rows, gold)
    budgeted = list(data)
    prompts = sorted(set.intersection(*(set(data[x]) for x in budgeted))) if budgeted else []
    bon = sorted((x for x in budgeted if _is_bon(rows, x)),
                 key=lambda x: statistics.fmean(data[x][p]["base_tokens"] for p in prompts))
    if len(bon) < 2 or not prompts:
        return {"gold": gold, "bon": bon, "cells": [], "headline": None}
    vec = {x: _vectors(data, x, prompts) for x in budgeted}
    ones = np.ones((1, len(prompts)))
    rng = np.random.default_rng(seed)
    boot = np.stack([np.bincount(rng.integers(0, len(prompts), len(prompts)),
                                 minlength=len(prompts)) for _ in range(draws)]).astype(float)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    curve = [vec[b] for b in bon]
    cells = []
    for label in (x for x in budgeted if x not in bon):
        point, reps = _factors(curve, vec[label], ones), _factors(curve, vec[label], boot)
        cell: dict[str, Any] = {"label": label, "budget": _budget_of(rows, label),
                                **{k: float(v.mean()) for k, v in vec[label].items()}}
        for c in COSTS:
            xs = [f for f, _ in reps[c]]
            cell[f"{c}_factor"], cell[f"{c}_censored"] = point[c][0]
            cell[f"{c}_interval"] = (_quantile(xs, lo_q), _quantile(xs, hi_q))
        cells.append(cell)
    return {"gold": gold, "bon": bon, "cells": cells, "level": level, "draws": draws,
            "prompts": len(prompts),
            "bon_points": [{"label": b, **{k: float(v.mean()) for k, v in vec[b].items()}}
                           for b in bon],
            "headline": _headline(rows, vec, bon, cells, gold)}


def _is_bon(rows: Sequence[dict[str, Any]], label: str) -> bool:
    return any(r["method"] == label and r.get("method_name") == "bon" for r in rows)


def _budget_of(rows: Sequence[dict[str, Any]], label: str) -> int | None:
    return next((r.get("budget") for r in rows if r["method"] == label), None)


def _headline(rows: Sequence[dict[str, Any]], vec: dict[str, Any], bon: list[str],
              cells: list[dict[str, Any]], gold: str) -> dict[str, Any]:
    """The question a user asks: does any search match the largest Best-of-N's gold at no more
    than 1/8 of its spent base tokens? Each such search's paired difference from it."""
    top = bon[-1]
    top_tokens = float(vec[top]["base_tokens"].mean())
    cheap = [c for c in cells if c["base_tokens"] <= top_tokens / 8]
    diffs = []
    for c in cheap:
        d = paired_difference(rows, c["label"], top, gold)
        if d is not None:
            diffs.append({"label": c["label"], "base_tokens": c["base_tokens"], **d})
    diffs.sort(key=lambda d: -d["mean"])
    return {"reference": top, "reference_tokens": top_tokens, "cheap": diffs}


def _factor_text(cell: dict[str, Any], c: str) -> str:
    f, cens = cell[f"{c}_factor"], cell[f"{c}_censored"]
    lo, hi = cell[f"{c}_interval"]
    mark = {"above": "> ", "below": "≤ "}.get(cens or "", "")
    return f"{mark}{f:.2f}× [{lo:.2f}, {'∞' if math.isinf(hi) else f'{hi:.2f}'}]"


def savings_markdown(table: dict[str, Any]) -> str:
    """The saving factors and the headline, as markdown."""
    gold = table["gold"]
    if not table["cells"]:
        return f"No Best-of-N curve (two or more budgets of bon) to read {gold} off.\n"
    lvl = round(100 * table["level"])
    out = [f"### Compute saved at equal gold ({gold})", "",
           "Best-of-N's curve (mean spent per prompt): " + ", ".join(
               f"{p['label']} {p['base_tokens']:.0f} tokens → {p['gold']:+.3f}"
               for p in table["bon_points"]) + ".", "",
           f"Saving factor = Best-of-N's cost for the same gold ÷ the method's cost, with a "
           f"{lvl} % bootstrap interval over prompts ({table['draws']} draws); `>`: the "
           "method's gold is above the whole curve (a lower bound), `≤`: below its cheapest "
           "point.", "",
           "| method | gold | base tokens spent | Best-of-N's tokens for that gold | tokens saved "
           "| FLOPs saved | wall time saved |",
           "|---|---|---|---|---|---|---|"]
    for c in table["cells"]:
        need = c["base_tokens"] * c["base_tokens_factor"]
        out.append(f"| {c['label']} | {c['gold']:+.3f} | {c['base_tokens']:.0f} | "
                   f"{'> ' if c['base_tokens_censored'] == 'above' else ''}{need:.0f} | "
                   + " | ".join(_factor_text(c, k) for k in COSTS) + " |")
    h = table["headline"]
    out += ["", f"At most 1/8 of {h['reference']}'s {h['reference_tokens']:.0f} spent base "
            "tokens, each search minus it, paired on (prompt, seed): mean ± SE (z)", ""]
    if not h["cheap"]:
        out.append("(no search spent that little)")
    for d in h["cheap"]:
        verdict = ("beats it" if d["mean"] - 1.96 * d["se"] > 0
                   else "falls short of it" if d["mean"] + 1.96 * d["se"] < 0
                   else "within 1.96 SE of it")
        out.append(f"- {d['label']} ({d['base_tokens']:.0f} tokens): {d['mean']:+.3f} ± "
                   f"{d['se']:.3f} ({d['z']:+.1f}) — {verdict}")
    return "\n".join(out) + "\n"

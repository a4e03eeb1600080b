"""Over-optimisation: where more search stops paying. At each budget of a method, the guide's
score of the answers it chose beside their gold (each scorer) and the KL estimate; the budget
at which each scorer's gold peaks; and whether the guide's score still rose after that peak
(the weak guide being optimised past the point where it tracks gold: Gao et al. 2023's
over-optimisation, seen at test time).

Gold's peak is the budget with the highest mean; "after the peak" is judged on the largest
budget: gold there minus gold at the peak, paired on (prompt, seed), with its standard error
(a fall of more than 2 SE is a real fall, not noise), and the guide's mean score there minus
at the peak.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from w2s.evaluate.budget import line_of
from w2s.evaluate.stats import paired_difference, prompt_mean_se


def overopt_table(rows: Sequence[dict[str, Any]], golds: Sequence[str]) -> dict[str, Any]:
    """Per method line (budgeted labels without their ``@Bx``): its budgets in order, the
    guide's score, each gold and the KL (mean ± SE over prompts) at each, and per gold scorer
    its peak and what followed it."""
    lines: dict[str, dict[int, str]] = {}
    for r in rows:
        if r.get("budget") is not None:
            lines.setdefault(line_of(r["method"]), {})[r["budget"]] = r["method"]
    out = []
    for line, by_b in lines.items():
        budgets = sorted(by_b)
        pts = []
        for b in budgets:
            sel = [r for r in rows if r["method"] == by_b[b]]
            pts.append({"budget": b, "label": by_b[b],
                        "guide": prompt_mean_se(sel, lambda r: r.get("guide_score")),
                        "kl": prompt_mean_se(sel, lambda r: r.get("kl")),
                        "kl_kind": sel[0].get("kl_kind"),
                        "gold": {g: prompt_mean_se(sel, lambda r, g=g: r["gold"].get(g))
                                 for g in golds}})
        out.append({"line": line, "points": pts,
                    "peaks": {g: _peak(rows, pts, g) for g in golds}})
    return {"golds": list(golds), "lines": out}


def _peak(rows: Sequence[dict[str, Any]], pts: list[dict[str, Any]], gold: str
          ) -> dict[str, Any] | None:
    """The budget where ``gold`` peaks; gold and the guide's score at the largest budget minus
    at the peak (gold paired on prompt and seed); ``over`` when gold fell by more than 2 SE
    there while the guide's score rose."""
    have = [p for p in pts if p["gold"][gold] is not None]
    if not have:
        return None
    top = max(have, key=lambda p: p["gold"][gold][0])
    last = have[-1]
    peak: dict[str, Any] = {"budget": top["budget"], "gold": top["gold"][gold][0],
                            "last_budget": last["budget"], "over": False}
    if last is not top:
        d = paired_difference(rows, last["label"], top["label"], gold)
        rise = (last["guide"][0] - top["guide"][0]
                if last["guide"] is not None and top["guide"] is not None else None)
        peak.update(after=d, guide_rise=rise)
        peak["over"] = bool(d is not None and rise is not None and rise > 0
                            and d["mean"] < -2 * d["se"])
    return peak


def overopt_markdown(table: dict[str, Any]) -> str:
    """One row per method line: where each scorer's gold peaked and what the largest budget
    did to gold and to the guide's score."""
    golds = table["golds"]
    out = ["### Over-optimisation: where more search stops paying", "",
           "Peak: the budget with the highest mean gold. After: gold at the largest budget "
           "minus at the peak, paired on (prompt, seed), mean ± SE, and the guide's score "
           "there minus at the peak; **over** marks a fall of more than 2 SE while the "
           "guide's score rose.", "",
           "| method | " + " | ".join(f"{g}: peak | {g}: after" for g in golds) + " | "
           "KL at the largest budget |",
           "|---|" + "---|---|" * len(golds) + "---|"]
    for line in table["lines"]:
        cells = []
        for g in golds:
            p = line["peaks"][g]
            if p is None:
                cells += ["–", "–"]
                continue
            cells.append(f"{p['budget']}× ({p['gold']:+.3f})")
            d = p.get("after")
            if d is None:
                cells.append("(peaks at the largest budget)")
                continue
            guide = p.get("guide_rise")
            cells.append(f"{d['mean']:+.3f} ± {d['se']:.3f}"
                         + (f", guide {guide:+.2f}" if guide is not None else "")
                         + (" **over**" if p["over"] else ""))
        last = line["points"][-1]
        kl = (f"{last['kl'][0]:.1f} ({last['kl_kind']})" if last["kl"] is not None else "–")
        out.append(f"| {line['line']} | " + " | ".join(cells) + f" | {kl} |")
    return "\n".join(out) + "\n"

"""Budget-matched comparisons: every method sized to spend at most b responses' worth of base
tokens (an eval config's ``budgets:``), its gold reward against b, and its paired difference
from Best-of-N at the same budget -- which search gives the most alignment per unit of
compute, with its standard error."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from w2s.evaluate.stats import paired_difference, prompt_mean_se

_AT = re.compile(r"@(\d+)x$")


def line_of(label: str) -> str:
    """A budgeted label's method line: ``cbs(k=2)@8x`` -> ``cbs(k=2)``."""
    return _AT.sub("", label)


def budget_table(rows: Sequence[dict[str, Any]], gold: str) -> dict[str, Any]:
    """Per method line and budget: gold mean ± SE over prompts, base tokens, and the paired
    difference from Best-of-N at that budget (None where there is no Best-of-N)."""
    budgets = sorted({r["budget"] for r in rows if r.get("budget") is not None})
    labels = list(dict.fromkeys(r["method"] for r in rows if r.get("budget") is not None))
    lines = list(dict.fromkeys(line_of(x) for x in labels))
    bon = {r["budget"]: r["method"] for r in rows
           if r.get("budget") is not None and r.get("method_name") == "bon"}
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    for label in labels:
        sel = [r for r in rows if r["method"] == label]
        b = sel[0]["budget"]
        cell: dict[str, Any] = {
            "label": label, "gold": prompt_mean_se(sel, lambda r: r["gold"].get(gold)),
            "base_tokens": sum(r["base_tokens"] for r in sel) / len(sel)}
        if b in bon and bon[b] != label:
            cell["vs_bon"] = paired_difference(rows, label, bon[b], gold)
        cells.setdefault(line_of(label), {})[b] = cell
    return {"gold": gold, "budgets": budgets, "lines": lines, "cells": cells}


def budget_markdown(table: dict[str, Any]) -> str:
    """Two tables: gold ± SE per method and budget, then each method minus Best-of-N."""
    budgets = table["budgets"]
    head = "| method | " + " | ".join(f"{b}× ({b} responses)" for b in budgets) + " |"
    sep = "|---|" + "---|" * len(budgets)
    out = [f"Gold ({table['gold']}) by budget: mean ± standard error over prompts "
           "(base tokens spent per prompt in brackets).", "", head, sep]
    for line in table["lines"]:
        row = table["cells"].get(line, {})
        out.append(f"| {line} | " + " | ".join(
            f"{c['gold'][0]:+.3f} ± {c['gold'][1]:.3f} [{c['base_tokens']:.0f}]"
            if (c := row.get(b)) and c["gold"] else "–" for b in budgets) + " |")
    out += ["", "Minus Best-of-N at the same budget, paired on (prompt, seed): mean ± SE (z).",
            "", head, sep]
    for line in table["lines"]:
        row = table["cells"].get(line, {})
        if not any("vs_bon" in c for c in row.values()):
            continue
        out.append(f"| {line} | " + " | ".join(
            f"{d['mean']:+.3f} ± {d['se']:.3f}" + (f" ({d['z']:+.1f})" if d["se"] > 1e-12 else "")
            if (c := row.get(b)) and (d := c.get("vs_bon")) else "–" for b in budgets) + " |")
    return "\n".join(out) + "\n"

"""The budget report's files: ``budget.md`` and its plot (:mod:`w2s.evaluate.budget`),
``savings.md`` (:mod:`w2s.evaluate.savings`), ``overopt.md`` and its plot
(:mod:`w2s.evaluate.overopt`) -- one place that writes what the three analyses compute."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from w2s.evaluate.budget import budget_markdown, budget_table
from w2s.evaluate.overopt import overopt_markdown, overopt_table
from w2s.evaluate.savings import savings_markdown, savings_table


def write_budget_report(rows: Sequence[dict[str, Any]], out: Path, gold: str,
                        title: str = "") -> list[Path]:
    """``budget.md`` (``gold`` first, then every other gold scorer: a second scorer that played
    no part in tuning the guide is the check on the first) and ``gold_vs_budget.png`` when the
    rows carry budgets, else nothing."""
    from w2s.plots import plot_budget, plot_overopt

    if not any(r.get("budget") is not None for r in rows):
        return []
    golds = [gold] + [g for g in dict.fromkeys(k for r in rows for k in r["gold"]) if g != gold]
    parts = [budget_markdown(budget_table(rows, g)) for g in golds]
    md = out / "budget.md"
    md.write_text(f"**{title}**\n\n" + "\n".join(parts), encoding="utf-8")
    saved = out / "savings.md"
    saved.write_text(f"**{title}**\n\n" + "\n".join(
        savings_markdown(savings_table(rows, g)) for g in golds), encoding="utf-8")
    over = overopt_table(rows, golds)
    (out / "overopt.md").write_text(f"**{title}**\n\n" + overopt_markdown(over),
                                    encoding="utf-8")
    table = budget_table(rows, gold)
    return [md, saved, out / "overopt.md",
            plot_budget(table, out / "gold_vs_budget.png", title=title),
            plot_budget(table, out / "gold_vs_spent.png", title=title, spent=True),
            plot_overopt(over, out / "overopt.png", title=title)]

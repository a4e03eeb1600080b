"""``w2s report``: the summary table and plots of a results JSONL.

Rewards, guide scores and KL are means over prompts, with standard errors over prompts (each
prompt's seeds are averaged first: a prompt's outputs are correlated); costs and fluency are
plain means over rows. The report is computed from the JSONL alone, so it can be rerun at any
time, also on a run still in progress.
"""

from __future__ import annotations

import io
import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.evaluate.stats import paired_difference, prompt_mean_se  # noqa: F401 (re-exported)
from w2s.textfile import strict_json


def family(label: str) -> str:
    """Sweep points of one method share a family: the label without its ``(knobs)``."""
    return re.sub(r"\s*\([^)]*\)", "", label).strip() or label


REQUIRED = ("method", "seed", "prompt_index", "gold", "kl", "base_logp_per_token", "base_tokens",
            "guide_tokens", "wall_time_s")


def check_rows(rows: Sequence[dict[str, Any]], where: str = "the results") -> None:
    """Every row is an object with the keys a report reads, of the types it reads them as."""
    def number(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    for n, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise W2SError(f"{where}: row {n} is a JSON {type(r).__name__}, not an object; is "
                           "this a w2s eval results file?")
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise W2SError(f"{where}: row {n} lacks {', '.join(missing)}; is this a w2s eval "
                           "results file?")
        wrong = [k for k, ok in (
            ("method", isinstance(r["method"], str)),
            ("seed", isinstance(r.get("seed"), int) and not isinstance(r.get("seed"), bool)),
            ("prompt_index", isinstance(r.get("prompt_index"), int)),
            ("gold", isinstance(r.get("gold"), dict) and all(
                number(v) for v in r["gold"].values())),
            *((k, number(r.get(k))) for k in ("kl", "base_logp_per_token", "base_tokens",
                                               "guide_tokens", "wall_time_s")),
        ) if k in r and not ok]
        if wrong:
            raise W2SError(f"{where}: row {n} has a {wrong[0]} of the wrong type "
                           f"({r[wrong[0]]!r}); is this a w2s eval results file?")


def unique_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Each (method hash, seed, prompt) once, the first row kept: a file two runs appended to
    (or rows pasted twice) must not count a prompt twice. Returns the rows and how many were
    dropped."""
    seen: set[tuple[Any, Any, Any]] = set()
    out = []
    for r in rows:
        key = (r.get("hash", r.get("method")), r.get("seed"), r.get("prompt_index"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out, len(rows) - len(out)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per method (label and hash), in the order methods first appear."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r.get("hash", "")), []).append(r)
    labels = [label for label, _ in groups]
    out = []
    for (label, digest), sel in groups.items():
        name = label if labels.count(label) == 1 else f"{label} #{digest[:6]}"
        gold_names = list(dict.fromkeys(k for r in sel for k in r["gold"]))
        lls = [r["base_logp_per_token"] for r in sel if r["base_logp_per_token"] is not None]
        out.append({
            "method": name, "family": family(label), "method_name": sel[0].get("method_name"),
            "hash": digest, "rows": len(sel),
            "prompts": len({r["prompt_index"] for r in sel}),
            "seeds": len({r["seed"] for r in sel}),
            "gold": {g: prompt_mean_se(sel, lambda r, g=g: r["gold"].get(g)) for g in gold_names},
            "guide_score": prompt_mean_se(sel, lambda r: r.get("guide_score")),
            "kl": prompt_mean_se(sel, lambda r: r.get("kl")),
            "kl_kind": sel[0].get("kl_kind", "none"),
            "base_logp_per_token": statistics.fmean(lls) if lls else float("nan"),
            "base_tokens": statistics.fmean(r["base_tokens"] for r in sel),
            "guide_tokens": statistics.fmean(r["guide_tokens"] for r in sel),
            "flops": statistics.fmean(r.get("flops", 0.0) for r in sel),
            "wall_time_s": statistics.fmean(r["wall_time_s"] for r in sel),
            "small_fraction": _mean_stat(sel, "small_fraction"),
            "words": statistics.fmean(len(r.get("response", "").split()) for r in sel),
            "distinct_2": distinct_bigrams([r.get("response", "") for r in sel]),
        })
    return out


def distinct_bigrams(texts: Sequence[str]) -> float:
    """Distinct word bigrams over all word bigrams of ``texts`` (1 = no phrase repeats; a
    method that degenerates into loops of positive words shows here, not in its gold score)."""
    grams = [tuple(w[i:i + 2]) for w in (t.split() for t in texts) for i in range(len(w) - 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _mean_stat(sel: Sequence[dict[str, Any]], key: str) -> float | None:
    """Mean of a decoder statistic over the rows that report it (e.g. Nudging's share of
    tokens the small model wrote), or None."""
    vals = [r["stats"][key] for r in sel if isinstance(r.get("stats"), dict) and key in r["stats"]]
    return statistics.fmean(vals) if vals else None


def _fmt(ms: tuple[float, float] | None, sign: bool = True) -> str:
    if ms is None:
        return "–"
    return f"{ms[0]:+.3f} ± {ms[1]:.3f}" if sign else f"{ms[0]:.2f} ± {ms[1]:.2f}"


def table_rows(summary: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    gold_names = list(dict.fromkeys(g for s in summary for g in s["gold"]))
    head = (["method"] + [f"gold: {g}" for g in gold_names]
            + ["KL from base", "base logp/token", "words", "distinct-2", "base tokens",
               "guide tokens", "s/prompt", "n"])
    body = []
    for s in summary:
        kl = _fmt(s["kl"], sign=False)
        if s["kl"] is not None and s["kl_kind"] == "bound":
            kl = f"≤ {s['kl'][0]:.2f}"
        name = s["method"]
        if s.get("small_fraction") is not None:
            name += f" (small wrote {s['small_fraction']:.0%})"
        body.append([name] + [_fmt(s["gold"].get(g)) for g in gold_names]
                    + [kl, f"{s['base_logp_per_token']:.2f}", f"{s['words']:.1f}",
                       f"{s['distinct_2']:.2f}", f"{s['base_tokens']:.0f}",
                       f"{s['guide_tokens']:.0f}", f"{s['wall_time_s']:.3f}", str(s["rows"])])
    return head, body


def markdown(summary: Sequence[dict[str, Any]]) -> str:
    head, body = table_rows(summary)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def rich_table(summary: Sequence[dict[str, Any]], title: str):  # noqa: ANN201
    from rich.table import Table

    head, body = table_rows(summary)
    table = Table(title=title)
    for i, h in enumerate(head):  # a wrapped method label would read as one more row
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in body:
        table.add_row(*row)
    return table


def unwrapped_width(table: Any) -> int:
    """The width at which no cell of ``table`` wraps (at least 80). Off a terminal a table is
    bound to no screen, and a wrapped "±" cell or method label reads as one more row."""
    from rich.console import Console

    return max(80, Console(width=100_000, file=io.StringIO()).measure(table).maximum)


def write_report(rows: Sequence[dict[str, Any]], out: Path, *, title: str = "",
                 gold: str | None = None, console: Any = None) -> dict[str, Any]:
    """Print the table; write summary.md, summary.json, the plots and alpaca_eval files."""
    from rich.console import Console

    from w2s.plots import plot_bars, plot_frontier, plot_tradeoff

    if not rows:
        raise W2SError("no result rows to report")
    check_rows(rows)
    rows, duplicated = unique_rows(rows)
    summary = summarize(rows)
    gold_names = list(dict.fromkeys(g for s in summary for g in s["gold"]))
    if gold is not None and gold not in gold_names:
        raise W2SError(f"no gold scorer {gold!r} in these rows; they have "
                       f"{', '.join(gold_names) or 'none'}")
    gold = gold or (gold_names[0] if gold_names else None)
    out.mkdir(parents=True, exist_ok=True)
    n_prompts = len({r["prompt_index"] for r in rows})
    n_seeds = len({r["seed"] for r in rows})
    title = title or (f"{rows[0].get('run', 'w2s eval')}: {n_prompts} prompt{'s' * (n_prompts > 1)}"
                      f" × {n_seeds} seed{'s' * (n_seeds > 1)}")
    # a terminal gets its own width; a pipe or a log gets the table unwrapped
    table = rich_table(summary, title)
    width = unwrapped_width(table)
    console = console or (Console() if sys.stdout.isatty() else Console(width=width))
    console.print(table)
    if duplicated:
        console.print(f"note: {duplicated} duplicated row(s) (same method, seed and prompt) "
                      "were counted once")
    (out / "summary.md").write_text(f"**{title}** (mean ± standard error over prompts; each "
                                    f"prompt's seeds averaged first)\n\n{markdown(summary)}"
                                    f"{trace_link(rows, out)}", encoding="utf-8")
    (out / "summary.json").write_text(strict_json(summary, indent=1), encoding="utf-8")
    rec = Console(width=width, record=True, file=io.StringIO())
    rec.print(table)
    (out / "summary.txt").write_text(rec.export_text(), encoding="utf-8")
    paths: dict[str, Any] = {"summary": summary, "markdown": out / "summary.md",
                             "duplicates": duplicated}
    paths["plots"] = []
    if gold is not None:
        paths["frontier"] = plot_frontier(summary, out / "gold_vs_kl.png", gold=gold, x="kl",
                                          title=title)
        paths["compute"] = plot_frontier(summary, out / "gold_vs_compute.png", gold=gold,
                                         x="base_tokens", title=title)
        paths["bars"] = plot_bars(summary, out / "gold_bars.png", title=title)
        paths["plots"] = [paths["frontier"], paths["compute"], paths["bars"]]
        if any(s["flops"] > 0 for s in summary):  # the compute axis in FLOPs (rows since #24)
            paths["plots"].append(plot_frontier(summary, out / "gold_vs_flops.png", gold=gold,
                                                x="flops", title=title))
        others = [g for g in gold_names if g != gold]
        if others:  # a second objective: the trade-off front between the first two
            paths["tradeoff"] = plot_tradeoff(summary, out / "gold_tradeoff.png", x=gold,
                                              y=others[0], title=title)
            paths["plots"].append(paths["tradeoff"])
        from w2s.evaluate.budget_report import write_budget_report

        paths["plots"] += write_budget_report(rows, out, gold, title)
    paths["alpaca_eval"] = write_alpaca_eval(rows, out / "alpaca_eval")
    return paths


def trace_link(rows: Sequence[dict[str, Any]], out: Path) -> str:
    """summary.md's link to traces.md, written when rows name traces; "" otherwise."""
    if write_trace_index(rows, out) is None:
        return ""
    return "\nWhat each search did, prompt by prompt: [traces.md](traces.md)\n"


def write_trace_index(rows: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """``traces.md``: each prompt's search trace (rows of a ``trace: true`` eval name theirs,
    relative to the run's folder), by method and seed; None when no row has one."""
    traced = sorted((r for r in rows if r.get("trace")),
                    key=lambda r: (str(r["method"]), r["seed"], r["prompt_index"]))
    if not traced:
        return None
    lines = ["# Search traces", "", "One JSON file per prompt (docs/traces.md); links are "
             "relative to the eval run's folder.", "",
             "| method | seed | prompt | guide score | trace |", "|---|---|---|---|---|"]
    for r in traced:
        prompt = str(r.get("prompt", ""))[:60].replace("|", "\\|").replace("\n", " ")
        score = "" if r.get("guide_score") is None else f"{r['guide_score']:+.3f}"
        lines.append(f"| {r['method']} | {r['seed']} | {r['prompt_index']}: {prompt} | "
                     f"{score} | [{r['trace']}]({r['trace']}) |")
    path = out / "traces.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_alpaca_eval(rows: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Instruction-following outputs as alpaca_eval reads them: one JSON list per method
    (``instruction``, ``output``, ``generator``), from the lowest seed of each prompt."""
    chosen: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        if r.get("task") != "instructions":
            continue
        key = (r["method"], r["prompt_index"])
        if key not in chosen or r["seed"] < chosen[key]["seed"]:
            chosen[key] = r
    written = []
    for label in dict.fromkeys(m for m, _ in chosen):
        items = sorted((r for (m, _), r in chosen.items() if m == label),
                       key=lambda r: r["prompt_index"])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (re.sub(r"[^\w.=,-]+", "_", label).strip("_") + ".json")
        path.write_text(json.dumps([{"instruction": r["prompt"], "output": r["response"],
                                     "generator": label} for r in items], indent=1,
                                   ensure_ascii=False), encoding="utf-8")
        written.append(path)
    return written

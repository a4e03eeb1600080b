"""The report of a generalise run: tables and plots from its step records.

``report.json`` holds every number; ``report.md`` the tables a person reads (accuracy, ROC AUC
and calibration of every model; PGR of every method with its interval and its difference from
naive training in standard errors; the deception split; the labels' own accuracy; time and
peak memory of every step); ``pgr.png``, ``sizes.png`` and ``deception.png`` the same at a
glance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from w2s.generalise.metrics import Draws, deception_split, pgr_table, scores


def count_params(path: str) -> int:
    """Parameters of a model's backbone, counted on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModel.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def build_report(run: Any, records: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    cfg = run.cfg
    seeds = sorted(records)
    y = run.truth("test")
    first = records[seeds[0]]
    students = [f"student-{m.name()}" for m in cfg.methods]
    models = [m for m in ("weak", "ceiling", "intermediate-gt", "intermediate-naive")
              if m in first] + students
    probs = {m: np.stack([np.asarray(records[s][m]["test"]) for s in seeds]) for m in models}
    correct = {m: ((p >= 0.5) == (y >= 0.5)).astype(np.float64) for m, p in probs.items()}
    table = {}
    for m in models:
        per_seed = [scores(p, y) for p in probs[m]]
        table[m] = {"model": first[m]["model"], "trained_on": first[m]["trained_on"],
                    **{k: {"mean": float(np.mean([d[k] for d in per_seed])),
                           "sd": float(np.std([d[k] for d in per_seed], ddof=1))
                           if len(seeds) > 1 else 0.0} for k in per_seed[0]}}
        accs = [records[s][m].get("label_accuracy") for s in seeds]
        if accs[0] is not None:
            table[m]["label_accuracy"] = float(np.mean(accs))
    draws = Draws.make(len(seeds), len(y), cfg.bootstrap.draws)
    baseline = "student-naive" if "student-naive" in students else None
    pgr = pgr_table(correct, students, draws, cfg.bootstrap.level, baseline)
    deception = deception_split(
        correct, ["ceiling", *students] + (["intermediate-naive"] if "intermediate-naive"
                                           in models else []), draws, cfg.bootstrap.level)
    sizes = {role: count_params(path) for role, path in run.paths.items()}
    return {
        "name": cfg.name, "data": cfg.data.model_dump(mode="json", exclude_defaults=True),
        "form": cfg.form, "train": cfg.train, "seeds": seeds,
        "models": {r: getattr(cfg.models, r) for r in run.paths}, "parameters": sizes,
        "splits": {k: len(v) for k, v in run.items.splits.items()},
        "level": cfg.bootstrap.level, "draws": cfg.bootstrap.draws,
        "scores": table, "pgr": pgr, "deception": deception, "baseline": baseline,
        "cost": _costs(run, records)}


def _costs(run: Any, records: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    feats = run.out / "features"
    if feats.is_dir():
        from safetensors import safe_open

        for f in sorted(feats.glob("*.safetensors")):
            with safe_open(str(f), "np") as h:
                out[f"features: {f.stem}"] = json.loads((h.metadata() or {}).get("cost", "{}"))
    for name in records[min(records)]:
        costs = [records[s][name]["cost"] for s in records]
        out[name] = {"seconds": float(np.mean([c["seconds"] for c in costs])),
                     "peak_mib": float(max(c["peak_mib"] for c in costs)),
                     "peak_of": costs[0].get("peak_of", "step")}
    return out


def _pm(x: dict[str, float]) -> str:
    return f"{x['mean']:.3f} ± {x['sd']:.3f}"


def markdown(r: dict[str, Any]) -> str:
    pct = f"{r['level']:.0%}"
    unit = "pairs" if r["form"] == "pairwise" else "texts"
    lines = [f"# w2s generalise: {r['name']}", "",
             f"Data {json.dumps(r['data'])}, {r['form']} form; {unit}: "
             + ", ".join(f"{k} {v:,}" for k, v in r["splits"].items())
             + ". Models: " + ", ".join(f"{k} `{v}` ({r['parameters'][k] / 1e6:.1f} M)"
                                        for k, v in r["models"].items())
             + f". Path: {r['train']}; training seeds {r['seeds']}; bootstrap {r['draws']:,} "
             f"draws over test items and seeds.", "",
             "## Every model on test (mean ± SD over training seeds)", "",
             "| model | trained on | accuracy | ROC AUC | ECE | its labels' accuracy |",
             "|---|---|---|---|---|---|"]
    for m, s in r["scores"].items():
        la = f"{s['label_accuracy']:.3f}" if "label_accuracy" in s else ""
        lines.append(f"| {m} | {s['trained_on']} | {_pm(s['accuracy'])} | {_pm(s['auc'])} | "
                     f"{_pm(s['ece'])} | {la} |")
    g = r["pgr"]["gap"]
    lines += ["", "## Performance gap recovered", "",
              f"ceiling − weak: {g['value']:+.3f} ± {g['se']:.3f} ({g['z']:.1f} SE; "
              f"{pct} interval {g['low']:+.3f} to {g['high']:+.3f})"
              + ("" if g["z"] >= 5 else " — under 5 SE: PGR is not well defined here"), ""]
    base = r["baseline"]
    head = "| student | accuracy | PGR | " + pct + " interval |" + (
        f" − {base.removeprefix('student-')} (accuracy, SE) |" if base else "")
    lines += [head, "|---|---|---|---|" + ("---|" if base else "")]
    for s, row in r["pgr"]["students"].items():
        p = row["pgr"]
        cell = ""
        if base:
            d = row.get(f"minus_{base}")
            cell = " — |" if d is None else f" {d['value']:+.4f} ± {d['se']:.4f} ({d['z']:+.1f} SE) |"
        lines.append(f"| {s.removeprefix('student-')} | {row['accuracy']:.3f} | "
                     f"{p['value']:+.3f} ± {p['se']:.3f} | {p['low']:+.3f} to {p['high']:+.3f} |"
                     + cell)
    d = r["deception"]
    lines += ["", "## The deception split", "",
              f"The weak supervisor is right on {d['weak_right_share']:.1%} of test. A student "
              "that imitates it is wrong where it is wrong; one that generalised is right "
              "there too.", "",
              "| model | accuracy where weak is right | accuracy where weak is wrong |",
              "|---|---|---|"]
    for m, row in d.items():
        if m == "weak_right_share":
            continue
        a, b = row["weak_right"], row["weak_wrong"]
        lines.append(f"| {m} | {a['value']:.3f} ({a['low']:.3f}–{a['high']:.3f}) | "
                     f"{b['value']:.3f} ({b['low']:.3f}–{b['high']:.3f}) |")
    lines += ["", "## Time and peak memory of each step", "",
              "Seconds: the mean over seeds. Peak: the process's resident memory during the "
              "step (what was loaded before it included), the largest over seeds.", "",
              "| step | seconds | peak MiB |", "|---|---|---|"]
    for name, c in r["cost"].items():
        lines.append(f"| {name} | {c['seconds']:.1f} | {c['peak_mib']:.0f} |")
    if r.get("search"):
        from w2s.generalise.search import search_markdown

        lines += ["", *search_markdown(r["search"])]
    return "\n".join(lines) + "\n"


def write_report(r: dict[str, Any], out: Path) -> dict[str, Path]:
    from w2s.generalise.store import write_json, write_text
    from w2s.plots import plot_deception, plot_pgr, plot_sizes

    write_json(out / "report.json", r)
    md = out / "report.md"
    write_text(md, markdown(r))
    title = f"{r['name']} ({r['form']}, {r['train']})"
    return {"markdown": md,
            "pgr": plot_pgr(r["pgr"], out / "pgr.png", title=title, level=r["level"]),
            "sizes": plot_sizes(r, out / "sizes.png", title=title),
            "deception": plot_deception(r["deception"], out / "deception.png", title=title)}

"""The loop back to search: the reward models a pairwise run trained guide Best-of-N and CBS.

Where the two halves of the mission meet: weak supervision (a small model trained on human
preferences) turned into a strong guide (SmolLM2 trained on the small model's preferences),
then spent at inference. Each search method runs with every guide at the same knobs, so at
equal base-token budget, paired over prompt x seed: the weak-to-strong reward models, the weak
supervisor's own reward model, the ceiling's (the strong model on human preferences), and the
other guides the config names (the zoo's weak tuned/untuned pair, say). It is an ordinary
``w2s eval`` run in ``OUT/search`` (its config written there), so it resumes like one, and
its report, plots and rows are eval's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from w2s.errors import W2SError


def guides(run: Any) -> dict[str, dict[str, Any]]:
    """Every guide of the comparison, by label (reward models of the first seed)."""
    s = run.cfg.search
    folder = run.out / "reward-models"
    students = s.students or [m.name() for m in run.cfg.methods]
    rms = {"weak RM": folder / "weak",
           **{f"w2s RM ({m})": folder / f"student-{m}" for m in students},
           "ceiling RM": folder / "ceiling"}
    out = dict(s.guides)
    for label, path in rms.items():
        if not path.is_dir():
            raise W2SError(f"reward model {path} is missing; rerun to export it")
        if label in out:
            raise W2SError(f"search.guides names {label!r}, which is one of this run's own "
                           "reward models; give it another label")
        out[label] = {"reward_model": str(path.resolve())}
    return out


def search_config(run: Any) -> dict[str, Any]:
    """The eval config: base sampling, then each search method once per guide."""
    s, g = run.cfg.search, guides(run)
    methods: list[dict[str, Any]] = [{"method": "sample", "label": "base sampling"}]
    for m in s.methods:
        if not isinstance(m, dict) or not isinstance(m.get("method"), str):
            raise W2SError("search.methods: each is a mapping with a method (bon, cbs, ...)")
        knobs = ",".join(f"{k}={v}" for k, v in m.items() if k not in ("method", "label"))
        name = m.get("label") or f"{m['method']}({knobs})"
        for label, guide in g.items():
            methods.append({**{k: v for k, v in m.items() if k != "label"}, "guide": guide,
                            "label": f"{name} · {label}"})
    return {"name": f"{run.cfg.name}-search", "task": s.task, "base": s.base,
            "prompts": s.prompts, "seeds": s.seeds, "sampling": s.sampling,
            "batch_size": s.batch_size, "device": run.cfg.device, "dtype": run.cfg.dtype,
            "methods": methods}


def run_search(run: Any, *, show_progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from w2s.evaluate.config import parse_config
    from w2s.evaluate.report import summarize, write_report
    from w2s.evaluate.run import run_eval
    from w2s.evaluate.stats import paired_difference

    out = run.out / "search"
    out.mkdir(parents=True, exist_ok=True)
    data = search_config(run)
    path = out / "eval.yaml"
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")  # JSON is YAML
    cfg = parse_config(data, path)
    log(f"search: {len(cfg.methods)} methods x {cfg.prompts} prompts x {len(cfg.seeds)} seeds "
        f"in {out}")
    rows = run_eval(cfg, out, show_progress=show_progress)
    write_report(rows, out, title=cfg.name)
    golds = list(dict.fromkeys(k for r in rows for k in r["gold"]))
    table = [{"method": s["method"], "gold": s["gold"], "base_tokens": s["base_tokens"],
              "guide_tokens": s["guide_tokens"], "wall_time_s": s["wall_time_s"],
              "distinct_2": s["distinct_2"], "base_logp_per_token": s["base_logp_per_token"]}
             for s in summarize(rows)]
    labels = [m.label for m in cfg.methods]
    diffs = []
    students = [lab for lab in guides(run) if lab.startswith("w2s RM")]
    for m in run.cfg.search.methods:
        knobs = ",".join(f"{k}={v}" for k, v in m.items() if k not in ("method", "label"))
        name = m.get("label") or f"{m['method']}({knobs})"
        for st in students:
            for other in guides(run):
                if other == st or other.startswith("w2s RM"):
                    continue
                a, b = f"{name} · {st}", f"{name} · {other}"
                if a in labels and b in labels:
                    diffs.append({"a": a, "b": b, **{
                        gold: paired_difference(rows, a, b, gold) for gold in golds}})
    return {"folder": str(out), "golds": golds, "table": table, "differences": diffs}


def search_markdown(s: dict[str, Any]) -> list[str]:
    golds = s["golds"]
    lines = ["## Search guided by the reward models (equal knobs, so equal base tokens)", "",
             f"`w2s eval` in `{s['folder']}`; mean ± SE over prompts (seeds averaged).", "",
             "| method · guide | " + " | ".join(golds) + " | base tokens | guide tokens | "
             "distinct-2 |", "|---|" + "---|" * (len(golds) + 3)]
    for row in s["table"]:
        cells = [f"{row['gold'][g][0]:+.3f} ± {row['gold'][g][1]:.3f}" if row["gold"].get(g)
                 else "—" for g in golds]
        lines.append(f"| {row['method']} | " + " | ".join(cells)
                     + f" | {row['base_tokens']:.0f} | {row['guide_tokens']:.0f} | "
                     f"{row['distinct_2']:.2f} |")
    lines += ["", "Paired over prompt × seed (a − b, SE over prompts):", "",
              "| a | b | " + " | ".join(golds) + " |", "|---|---|" + "---|" * len(golds)]
    for d in s["differences"]:
        cells = [f"{d[g]['mean']:+.3f} ± {d[g]['se']:.3f} ({d[g]['z']:+.1f} SE)" if d.get(g)
                 else "—" for g in golds]
        lines.append(f"| {d['a']} | {d['b']} | " + " | ".join(cells) + " |")
    return lines

"""``w2s demo``: the paper's controlled-sentiment experiment, offline, on the shipped zoo.

Held-out movie-review prefixes; every method continues them with the base model (or the small
tuned model alone, for reference); VADER (gold) and TextBlob (a second, independent lexicon)
score the continuations; the base model's log-likelihood per token measures fluency. Methods:
base sampling, the small tuned model alone, Best-of-16, EFT (beta=1), weak-to-strong search
CBS(4,4,5), and CBS with the cross-vocabulary pair.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from w2s.errors import W2SError
from w2s.plots import mean_se, plot_methods

ROLES = ("base", "tuned", "untuned", "xtuned", "xuntuned")


def zoo_dir() -> Path:
    from w2s.zoo.build import ZOO_DIR

    return ZOO_DIR


def base_loglik_per_token(base, prompts: list[str], texts: list[str]) -> list[float]:  # noqa: ANN001
    """Mean log-likelihood per token of each response under the base model (fluency)."""
    lps = base.token_logprobs([base.encode_prompt(p) for p in prompts],
                              [base.encode_response(t) for t in texts])
    return [float(x.mean()) if len(x) else 0.0 for x in lps]


def run_demo(out: Path, *, quick: bool = False, models_dir: Path | None = None,
             prompts: int | None = None, seeds: int | None = None) -> list[dict]:
    import w2s
    from w2s.tasks.sentiment import load_prompts, textblob, vader

    # a pipe or a log gets the table unwrapped; a terminal gets its own width
    console = Console() if sys.stdout.isatty() else Console(width=120)
    models_dir = models_dir or zoo_dir()
    missing = [r for r in ROLES if not (models_dir / r / "config.json").exists()]
    if missing:
        raise W2SError(f"the zoo models {', '.join(missing)} are missing from {models_dir}; "
                       "rebuild them with `w2s zoo build`")
    n_prompts = prompts or (4 if quick else 64)
    n_seeds = seeds or (1 if quick else 3)
    max_new = 20 if quick else 50
    prompt_list = load_prompts(models_dir / "prompts.jsonl", limit=n_prompts)
    base = w2s.HFModel.load(str(models_dir / "base"), batch_size=512)
    tuned = w2s.HFModel.load(str(models_dir / "tuned"), batch_size=512)
    pair = w2s.PairGuide(tuned, w2s.HFModel.load(str(models_dir / "untuned"), batch_size=512))
    xpair = w2s.PairGuide(w2s.HFModel.load(str(models_dir / "xtuned"), batch_size=512),
                          w2s.HFModel.load(str(models_dir / "xuntuned"), batch_size=512))
    cbs = w2s.SearchParams(4, 4, 5)
    methods: dict[str, Callable] = {
        "base sampling": lambda s: w2s.sample(base, pair, prompt_list, s),
        "small tuned alone": lambda s: w2s.sample(tuned, pair, prompt_list, s),
        "best-of-16": lambda s: w2s.best_of_n(base, pair, prompt_list, w2s.BestOfNParams(16), s),
        "eft (beta=1)": lambda s: w2s.eft(base, pair, prompt_list, w2s.EFTParams(1.0), s),
        "cbs (4,4,5)": lambda s: w2s.cbs(base, pair, prompt_list, cbs, s),
        "cbs (4,4,5) cross-vocab": lambda s: w2s.cbs(base, xpair, prompt_list, cbs, s),
    }
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "demo.jsonl"
    rows: list[dict] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with jsonl.open("w", encoding="utf-8") as f, Progress(*columns, console=console,
                                                           transient=True) as bar:
        task = bar.add_task("demo", total=len(methods) * n_seeds)
        for name, run in methods.items():
            for seed in range(n_seeds):
                bar.update(task, description=f"{name}, seed {seed}")
                t0 = time.perf_counter()
                results = run(w2s.SamplingParams(max_new_tokens=max_new, temperature=0.7, seed=seed))
                wall = time.perf_counter() - t0
                texts = [r.text for r in results]
                gold, second = vader(texts), textblob(texts)
                ll = base_loglik_per_token(base, prompt_list, texts)
                for r, g, s2, lpt in zip(results, gold, second, ll):
                    small = name == "small tuned alone"  # sampled from the small model
                    row = {"method": name, "seed": seed, "prompt": r.prompt, "response": r.text,
                           "gold": g, "textblob": s2, "base_logp_per_token": lpt,
                           "guide_score": r.score,
                           "base_tokens": 0 if small else r.cost.base_tokens,
                           "small_tokens": r.cost.base_tokens if small else 0,
                           "guide_tokens": r.cost.guide_tokens,
                           "wall_time_s": wall / len(results), "params": r.params}
                    rows.append(row)
                    f.write(json.dumps(row) + "\n")
                f.flush()
                bar.advance(task)
    table = summary_table(rows, f"w2s demo: controlled sentiment ({len(prompt_list)} held-out "
                                f"prompts x {n_seeds} seeds, max_new_tokens={max_new}, T=0.7)")
    console.print(table)
    png = plot_methods(rows, out / "demo.png", reward="gold",
                       title="w2s demo: gold reward (VADER) by method")
    (out / "summary.txt").write_text(_table_text(table))
    console.print(f"outputs: {jsonl}  plot: {png}  table: {out / 'summary.txt'}")
    return rows


def summary_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col, just in (("method", "left"), ("gold (VADER)", "right"), ("TextBlob", "right"),
                      ("base logp/token", "right"), ("base tokens", "right"),
                      ("wall s/prompt", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for m in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == m]
        g, s2 = mean_se([r["gold"] for r in sel]), mean_se([r["textblob"] for r in sel])
        table.add_row(m, f"{g[0]:+.3f} ± {g[1]:.3f}", f"{s2[0]:+.3f} ± {s2[1]:.3f}",
                      f"{mean_se([r['base_logp_per_token'] for r in sel])[0]:.2f}",
                      f"{mean_se([r['base_tokens'] for r in sel])[0]:.0f}",
                      f"{mean_se([r['wall_time_s'] for r in sel])[0]:.3f}")
    return table


def _table_text(table: Table) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()

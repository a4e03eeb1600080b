"""``w2s demo``: every method side by side on the embedded models.

Until the trained model zoo ships, the embedded models are the tiny random-initialised set
from :mod:`w2s.zoo.tiny` (built on first use), so the numbers show the machinery working, not
alignment quality: the table reports the *guide's* score, which is what search optimises.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

PROMPTS = ["The movie was", "I thought the film", "This picture is", "The acting in it",
           "Honestly, the story", "After the credits"]


def _se(xs: list[float]) -> float:
    return statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else 0.0


def run_demo(out: Path, *, quick: bool = False, models_dir: Path | None = None) -> list[dict]:
    import w2s
    from w2s.zoo.tiny import build_tiny_set

    console = Console()
    models_dir = models_dir or Path.home() / ".cache" / "w2s" / "tiny-v1"
    roles = ["base", "tuned", "untuned", "xtuned", "xuntuned"]
    if not all((models_dir / r / "config.json").exists() for r in roles):
        console.print(f"building the tiny demo models in {models_dir} ...")
        build_tiny_set(models_dir)
    base = w2s.HFModel.load(str(models_dir / "base"))
    pair = w2s.PairGuide.load(str(models_dir / "tuned"), str(models_dir / "untuned"))
    xpair = w2s.PairGuide.load(str(models_dir / "xtuned"), str(models_dir / "xuntuned"))
    prompts = PROMPTS[:2] if quick else PROMPTS
    seeds = [0] if quick else [0, 1, 2]
    max_new = 16 if quick else 50
    methods = {
        "sample": lambda s: w2s.sample(base, pair, prompts, s),
        "bon (N=16)": lambda s: w2s.best_of_n(base, pair, prompts, w2s.BestOfNParams(16), s),
        "eft (beta=1)": lambda s: w2s.eft(base, pair, prompts, w2s.EFTParams(1.0), s),
        "cbs (4,4,5)": lambda s: w2s.cbs(base, pair, prompts, w2s.SearchParams(4, 4, 5), s),
        "cbs (4,4,5) cross-vocab": lambda s: w2s.cbs(base, xpair, prompts,
                                                    w2s.SearchParams(4, 4, 5), s),
    }
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with (out / "demo.jsonl").open("w", encoding="utf-8") as f, Progress(console=console,
                                                                          transient=True) as bar:
        task = bar.add_task("decoding", total=len(methods) * len(seeds))
        for name, run in methods.items():
            for seed in seeds:
                t0 = time.perf_counter()
                results = run(w2s.SamplingParams(max_new_tokens=max_new, temperature=0.7, seed=seed))
                wall = time.perf_counter() - t0
                for r in results:
                    row = {"method": name, "seed": seed, "prompt": r.prompt, "response": r.text,
                           "guide_score": r.score, "base_tokens": r.cost.base_tokens,
                           "wall_time_s": wall / len(results)}
                    rows.append(row)
                    f.write(json.dumps(row) + "\n")
                f.flush()
                bar.advance(task)
    table = Table(title=f"w2s demo ({len(prompts)} prompts x {len(seeds)} seeds, "
                        f"max_new_tokens={max_new})")
    for col in ("method", "guide score (mean ± se)", "base tokens / prompt", "wall s / prompt"):
        table.add_column(col)
    for name in methods:
        sel = [r for r in rows if r["method"] == name]
        scores = [r["guide_score"] for r in sel]
        table.add_row(name, f"{statistics.mean(scores):+.2f} ± {_se(scores):.2f}",
                      f"{statistics.mean(r['base_tokens'] for r in sel):.0f}",
                      f"{statistics.mean(r['wall_time_s'] for r in sel):.3f}")
    console.print(table)
    console.print(f"all outputs: {out / 'demo.jsonl'}")
    return rows

"""``w2s demo``: the paper's controlled-sentiment experiment, offline, on the shipped zoo.

Held-out movie-review prefixes; every method continues them with the base model (or the small
tuned model alone, for reference); VADER (gold) and TextBlob (a second, independent lexicon)
score the continuations; the base model's log-likelihood per token measures fluency, and the KL
from the base what each method paid. Methods: base sampling, the small tuned model alone,
Best-of-16, EFT (beta=1), weak-to-strong search CBS(4,4,5), and CBS with the cross-vocabulary
pair. The demo is a fixed eval config (:mod:`w2s.evaluate`), so it is resumable too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2s.errors import W2SError

ROLES = ("base", "tuned", "untuned", "xtuned", "xuntuned")


def zoo_dir() -> Path:
    from w2s.zoo import ZOO_DIR

    return ZOO_DIR


def demo_config(models_dir: Path, *, quick: bool, prompts: int | None, seeds: int | None
                ) -> dict[str, Any]:
    """The demo as an eval config (the paper's settings: CBS 4,4,5, BoN 16, EFT beta 1)."""
    m = {r: str(models_dir / r) for r in ROLES}
    return {
        "name": "w2s demo: controlled sentiment",
        "task": "sentiment", "base": m["base"],
        "guide": {"tuned": m["tuned"], "untuned": m["untuned"]},
        "prompts": prompts or (4 if quick else 64), "seeds": seeds or (1 if quick else 3),
        "sampling": {"max_new_tokens": 20 if quick else 50, "temperature": 0.7},
        "batch_size": 512,
        "methods": [
            {"method": "sample", "label": "base sampling"},
            {"method": "sample", "model": "tuned", "label": "small tuned alone"},
            {"method": "bon", "n": 16, "label": "best-of-16"},
            {"method": "eft", "beta": 1.0, "label": "eft (beta=1)"},
            {"method": "cbs", "w": 4, "k": 4, "l": 5, "label": "cbs (4,4,5)"},
            {"method": "cbs", "w": 4, "k": 4, "l": 5, "label": "cbs (4,4,5) cross-vocab",
             "guide": {"tuned": m["xtuned"], "untuned": m["xuntuned"]}},
        ],
    }


def run_demo(out: Path, *, quick: bool = False, models_dir: Path | None = None,
             prompts: int | None = None, seeds: int | None = None,
             restart: bool = False) -> list[dict]:
    """Run (or resume) the demo into ``out``; print the table; write the plots."""
    from w2s.evaluate.config import parse_config
    from w2s.evaluate.report import write_report
    from w2s.evaluate.run import check_out_dir, run_eval

    models_dir = models_dir or zoo_dir()
    missing = [r for r in ROLES if not (models_dir / r / "config.json").exists()]
    if missing:
        raise W2SError(f"the zoo models {', '.join(missing)} are missing from {models_dir}; "
                       "rebuild them with `w2s zoo build`")
    data = demo_config(models_dir, quick=quick, prompts=prompts, seeds=seeds)
    cfg = parse_config(data, Path("demo.yaml").resolve())
    check_out_dir(out)
    rows = run_eval(cfg, out, restart=restart)
    n_seeds = len(cfg.seeds)
    title = (f"w2s demo: controlled sentiment ({data['prompts']} held-out prompts × {n_seeds} "
             f"seed{'s' * (n_seeds > 1)}, max_new_tokens={data['sampling']['max_new_tokens']}, "
             "T=0.7)")
    write_report(rows, out, title=title)
    print(f"outputs: {out / 'results.jsonl'}  table: {out / 'summary.md'}  "
          f"plots: {out / 'gold_bars.png'}, {out / 'gold_vs_kl.png'}, "
          f"{out / 'gold_vs_compute.png'}")
    return rows

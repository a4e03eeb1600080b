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


def _run(data: dict[str, Any], name: str, out: Path, restart: bool) -> tuple[list[dict], int]:
    """Run (or resume) a demo's eval config into ``out``; its rows and number of seeds."""
    from w2s.evaluate.config import parse_config
    from w2s.evaluate.run import check_out_dir, run_eval

    cfg = parse_config(data, Path(name).resolve())
    check_out_dir(out)
    return run_eval(cfg, out, restart=restart), len(cfg.seeds)


def run_demo(out: Path, *, quick: bool = False, models_dir: Path | None = None,
             prompts: int | None = None, seeds: int | None = None,
             restart: bool = False) -> list[dict]:
    """Run (or resume) the demo into ``out``; print the table; write the plots."""
    from w2s.evaluate.report import write_report

    models_dir = models_dir or zoo_dir()
    missing = [r for r in ROLES if not (models_dir / r / "config.json").exists()]
    if missing:
        raise W2SError(f"the zoo models {', '.join(missing)} are missing from {models_dir}; "
                       "rebuild them with `w2s zoo build`")
    data = demo_config(models_dir, quick=quick, prompts=prompts, seeds=seeds)
    rows, n_seeds = _run(data, "demo.yaml", out, restart)
    title = (f"w2s demo: controlled sentiment ({data['prompts']} held-out prompts × {n_seeds} "
             f"seed{'s' * (n_seeds > 1)}, max_new_tokens={data['sampling']['max_new_tokens']}, "
             "T=0.7)")
    write_report(rows, out, title=title)
    print(f"outputs: {out / 'results.jsonl'}  table: {out / 'summary.md'}  "
          f"plots: {out / 'gold_bars.png'}, {out / 'gold_vs_kl.png'}, "
          f"{out / 'gold_vs_compute.png'}")
    return rows


# ------------------------------------------------------------------ on real text
REAL_PROMPTS = Path(__file__).resolve().parent / "zoo" / "models" / "prompts-cased.jsonl"
"""The held-out review openings in their original case (the same snippets as the zoo's
lower-cased ``prompts.jsonl``; see :func:`w2s.zoo.family.heldout_prompts`)."""
REAL_LABELS = {"sample": "base sampling", "tuned": "small tuned alone", "bon": "best-of-16",
               "cbs": "cbs (4,4,5)", "eft": "eft (beta=1)", "nudging": "nudging (gamma=0.1)"}


def real_demo_config(base: Path, family: Path, *, quick: bool, prompts: int | None,
                     seeds: int | None) -> dict[str, Any]:
    """The controlled-sentiment experiment on a real pretrained base (SmolLM2-135M-Instruct,
    in process) steered by its matched small family (same tokenizer, so EFT runs too)."""
    L = REAL_LABELS
    return {
        "name": "w2s demo --real: controlled sentiment on SmolLM2",
        "task": {"name": "sentiment", "path": str(REAL_PROMPTS)}, "base": str(base),
        "guide": {"tuned": str(family / "tuned"), "untuned": str(family / "untuned")},
        "prompts": prompts or (3 if quick else 64), "seeds": seeds or (1 if quick else 2),
        "sampling": {"max_new_tokens": 16 if quick else 50, "temperature": 0.7},
        "batch_size": 256,
        "methods": [
            {"method": "sample", "label": L["sample"]},
            {"method": "sample", "model": "tuned", "label": L["tuned"]},
            {"method": "bon", "n": 16, "label": L["bon"]},
            {"method": "cbs", "w": 4, "k": 4, "l": 5, "label": L["cbs"]},
            {"method": "eft", "beta": 1.0, "label": L["eft"]},
            {"method": "nudging", "gamma": 0.1, "label": L["nudging"]},
        ],
    }


def comparisons(rows: list[dict], gold: str = "vader") -> list[tuple[str, dict | None]]:
    """The differences the real-text demo is judged by, paired on (prompt, seed)."""
    from w2s.evaluate.report import paired_difference

    L = REAL_LABELS
    return [(f"{a} − {b}", paired_difference(rows, a, b, gold))
            for a, b in ((L["cbs"], L["sample"]), (L["cbs"], L["bon"]),
                         (L["bon"], L["sample"]), (L["eft"], L["sample"]))]


def examples_markdown(rows: list[dict], n: int = 6) -> str:
    """The first ``n`` prompts (lowest seed), every method's response side by side with its
    VADER score: a reader sees the text, not only the numbers."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seed = min(r["seed"] for r in rows)
    by = {(r["method"], r["prompt_index"]): r for r in rows if r["seed"] == seed}
    prompts = sorted({r["prompt_index"] for r in rows})[:n]
    out = [f"# Examples (seed {seed}; VADER in brackets)", ""]
    for p in prompts:
        first = next((by[(m, p)] for m in methods if (m, p) in by), None)
        if first is None:
            continue
        out += [f"## “{first['prompt']}…”", "", "| method | continuation |", "|---|---|"]
        for m in methods:
            r = by.get((m, p))
            if r is not None:
                text = " ".join(r["response"].split()).replace("|", "\\|")
                out.append(f"| {m} [{r['gold'].get('vader', float('nan')):+.2f}] | {text} |")
        out.append("")
    return "\n".join(out) + "\n"


def run_real_demo(out: Path, *, quick: bool = False, family: Path | None = None,
                  base: Path | None = None, prompts: int | None = None,
                  seeds: int | None = None, restart: bool = False) -> list[dict]:
    """The demo on real text: SmolLM2 steered by its family; table, comparisons, plots and
    side-by-side examples under ``out``."""
    from w2s.evaluate.report import write_report
    from w2s.zoo.family import family_dir
    from w2s.zoo.pretrained import get_pretrained

    family = family or family_dir("smollm2")
    missing = [r for r in ("tuned", "untuned") if not (family / r / "config.json").is_file()]
    if missing:
        raise W2SError(f"the SmolLM2 family ({', '.join(missing)}) is not in {family}; build it "
                       "with `w2s zoo family` (about 40 minutes on 2 CPU cores)")
    base = base or get_pretrained("smollm2")
    data = real_demo_config(base, family, quick=quick, prompts=prompts, seeds=seeds)
    rows, n_seeds = _run(data, "demo-real.yaml", out, restart)
    title = (f"w2s demo --real: SmolLM2-135M-Instruct steered by its 12 M family "
             f"({data['prompts']} held-out prompts × {n_seeds} seed{'s' * (n_seeds > 1)}, "
             f"max_new_tokens={data['sampling']['max_new_tokens']}, T=0.7)")
    write_report(rows, out, title=title)
    lines = ["VADER differences, paired on (prompt, seed), mean ± SE over prompts:"]
    for name, d in comparisons(rows):
        if d is not None:
            lines.append(f"  {name}: {d['mean']:+.3f} ± {d['se']:.3f} ({d['z']:+.1f} SE, "
                         f"{d['prompts']} prompts, {d['pairs']} pairs)")
    print("\n".join(lines))
    (out / "comparisons.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "examples.md").write_text(examples_markdown(rows), encoding="utf-8")
    print(f"outputs: {out / 'results.jsonl'}  table: {out / 'summary.md'}  examples: "
          f"{out / 'examples.md'}  plots: {out / 'gold_bars.png'}, {out / 'gold_vs_kl.png'}")
    return rows

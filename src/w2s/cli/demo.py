"""``w2s demo``: every method side by side on the shipped zoo, or on SmolLM2 (--real)."""

from __future__ import annotations

from pathlib import Path

import click

from w2s.cli.group import cli
from w2s.errors import W2SError


@cli.command()
@click.option("--out", default=None, metavar="DIR",
              help="Where results.jsonl, the table and the plots go "
              "[default: w2s-demo, quick: w2s-demo-quick].")
@click.option("--quick", is_flag=True, help="A smoke run of a few seconds (4 prompts, 1 seed).")
@click.option("--prompts", type=click.IntRange(min=1), default=None,
              help="Number of held-out prompts [default: 64, quick: 4].")
@click.option("--seeds", type=click.IntRange(1, 10_000), default=None,
              help="Number of seeds per prompt [default: 3, quick: 1].")
@click.option("--models", metavar="DIR", default=None,
              help="Folder of zoo models [default: the shipped zoo].")
@click.option("--restart", is_flag=True, help="Discard earlier results in --out and start over.")
@click.option("--real", is_flag=True, help="On real text: SmolLM2-135M-Instruct (w2s zoo get "
              "smollm2) steered by its matched small family (w2s zoo family) [default "
              "prompts x seeds: 64 x 2, quick: 3 x 1].")
@click.option("--family", metavar="DIR", default=None,
              help="With --real: the family's folder [default: ~/.cache/w2s/smollm2-family].")
def demo(out: str | None, quick: bool, prompts: int | None, seeds: int | None,
         models: str | None, restart: bool, real: bool, family: str | None) -> None:
    """Controlled sentiment, offline: every method side by side on the shipped tiny zoo
    (or, with --real, on SmolLM2 steered by its matched small family).

    Prints a table (gold reward mean ± standard error for VADER and TextBlob, KL from the base,
    the base model's log-likelihood per token, words per response, distinct bigrams, tokens,
    wall time) and writes results.jsonl, summary.md and the plots gold_bars.png,
    gold_vs_kl.png, gold_vs_compute.png under --out; --real also writes comparisons.md (paired
    differences with standard errors) and examples.md (outputs side by side).
    Interrupted? Run it again: finished rows are kept.
    """
    from w2s.demo import run_demo, run_real_demo

    if real:
        if models:
            raise W2SError("--models is the tiny zoo's folder; with --real use --family")
        out_dir = Path(out) if out else Path("w2s-demo-real-quick" if quick else "w2s-demo-real")
        run_real_demo(out_dir, quick=quick, family=Path(family) if family else None,
                      prompts=prompts, seeds=seeds, restart=restart)
        return
    if family:
        raise W2SError("--family goes with --real")
    out_dir = Path(out) if out else Path("w2s-demo-quick" if quick else "w2s-demo")
    run_demo(out_dir, quick=quick, models_dir=Path(models) if models else None,
             prompts=prompts, seeds=seeds, restart=restart)


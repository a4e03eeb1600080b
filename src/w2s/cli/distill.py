"""``w2s distill``: keep the gain without the search.

``w2s distill data`` runs one request (the same flags as ``generate``) over a prompt set and
writes TRL-native datasets (:mod:`w2s.distill`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from w2s.cli.group import cli
from w2s.cli.options import read_prompts
from w2s.cli.requests import RequestCommand, build_request, request_options, resolver_of


@cli.group()
def distill() -> None:
    """Search outputs as training data: SFT, preference and KTO datasets for TRL."""


@distill.command("data", cls=RequestCommand)
@request_options
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Folder for raw.jsonl, sft.jsonl, preference.jsonl, kto.jsonl and "
              "distill.json; a rerun resumes it, another run's folder is refused.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sampling seeds per prompt (seeds 0..N-1): N rows per prompt.")
@click.option("--pairs", type=click.Choice(["best-worst", "vs-sample", "none"]),
              default="best-worst", show_default=True,
              help="Preference and KTO rows: the search's best against its worst candidate "
              "(West-of-N), against a plain base sample of the same seed, or none (SFT only).")
@click.option("--gold", multiple=True, type=click.Choice(["vader", "textblob", "objectivity"]),
              help="Also score every response with this gold scorer (repeatable).")
@click.option("--restart", is_flag=True, help="Discard this folder's earlier rows first.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def data(**o: Any) -> None:
    """Run a method over prompts and write TRL datasets (SFT, DPO and KTO rows).

    Every finished (seed, prompt) is appended to DIR/raw.jsonl at once; the datasets are
    written from it at the end, each row with its guide score, gold scores, method, knobs,
    seed and prompt index. Load them with datasets.load_dataset("json", data_files=...).

    \b
    Example:
      w2s distill data --base zoo:base --tuned zoo:tuned --untuned zoo:untuned \\
          --method cbs --prompts-file train.jsonl --seeds 2 --gold vader --out data/cbs
    """
    from w2s.distill import DistillPlan, run_distill_data

    out, seeds, pairs = o.pop("out"), o.pop("seeds"), o.pop("pairs")
    gold, restart, quiet = o.pop("gold"), o.pop("restart"), o.pop("no_progress")
    if o.pop("return_all"):
        raise click.UsageError("--return-all is implied here: distill data keeps every "
                               "candidate of a ranked method")
    request = build_request(o, return_all=False)
    prompts = read_prompts(o["prompt"], o["prompts_file"])
    plan = DistillPlan(request, prompts, seeds, None if pairs == "none" else pairs, tuple(gold))
    counts = run_distill_data(plan, out, resolver=resolver_of(o), restart=restart,
                              show_progress=not quiet)
    made = ", ".join(f"{n} {name} rows" for name, n in counts.items())
    click.echo(f"{made} in {out}")

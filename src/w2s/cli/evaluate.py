"""``w2s eval`` (a sweep of methods from a config, resumable) and ``w2s report``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from w2s.cli.group import cli


@cli.command("eval")
@click.argument("config", metavar="CONFIG")
@click.option("--out", metavar="DIR", default=None,
              help="Folder for results.jsonl, the table and the plots [default: runs/<name>].")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the first N prompts (a quick look; rows are reused when you rerun "
              "with more).")
@click.option("--seeds", type=click.IntRange(1, 10_000), default=None,
              help="Run seeds 0..N-1 instead of the config's seeds.")
@click.option("--restart", is_flag=True, help="Discard earlier results in --out and start over.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Rows per forward pass [default: the config's, else 64].")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 or auto [default: the config's].")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16", "half", "float"]),
              default=None, help="Weights' dtype [default: the config's, else auto].")
@click.option("--device-map", metavar="MAP", default=None,
              help="Shard the base with accelerate: auto, balanced, a JSON object or a .json "
              "file [default: the config's].")
@click.option("--guide-device", metavar="DEVICE", default=None,
              help="Where the guide's small models go [default: the config's, else --device].")
@click.option("--memory-limit", metavar="GIB", type=float, default=None,
              help="Refuse a search whose memory plan is over this many GiB [default: the "
              "config's, else what is free].")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def eval_(config: str, out: str | None, limit: int | None, seeds: int | None, restart: bool,
          batch_size: int | None, device: str | None, dtype: str | None,
          device_map: str | None, guide_device: str | None, memory_limit: float | None,
          no_progress: bool) -> None:
    """Evaluate a sweep of methods: gold reward, KL from the base, cost; resumable.

    CONFIG is a YAML/TOML file, or a shipped one: sentiment, tradeoff, adaptive and budget
    (the zoo, offline; budget compares the searches at equal base tokens), instructions,
    summarization (templates for your own models). Each finished (method, seed, prompt) is
    appended to DIR/results.jsonl at once; rerunning the same command skips what is done.
    At the end the table is printed and summary.md, gold_vs_kl.png, gold_vs_compute.png and
    gold_bars.png are written to DIR.

    \b
    Examples:
      w2s eval sentiment --limit 8          # a quick look on the shipped zoo
      w2s eval sentiment --out runs/sent    # the full sweep (about 4 minutes on 2 cores)
      w2s report runs/sent/results.jsonl    # the table and plots again, from the JSONL
    """
    from w2s.configfile import find_config, read_config_file
    from w2s.evaluate.config import SHIPPED, parse_config
    from w2s.evaluate.report import write_report
    from w2s.evaluate.run import check_out_dir, run_eval

    path = find_config(config, SHIPPED)
    data = read_config_file(path)
    for key, value in (("batch_size", batch_size), ("device", device), ("dtype", dtype),
                       ("device_map", device_map), ("guide_device", guide_device),
                       ("memory_limit", memory_limit)):
        if value is not None:
            data[key] = value
    cfg = parse_config(data, path)
    out_dir = Path(out) if out else Path("runs") / cfg.name
    check_out_dir(out_dir)
    try:
        rows = run_eval(cfg, out_dir, limit=limit, restart=restart,
                        seeds=list(range(seeds)) if seeds else None,
                        show_progress=not no_progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: every finished row is in {out_dir / 'results.jsonl'}; run the "
                   "same command again to resume", err=True)
        sys.exit(130)
    paths = write_report(rows, out_dir)
    click.echo(f"results: {out_dir / 'results.jsonl'}  table: {paths['markdown']}"
               + _plots_line(paths))


@cli.command()
@click.argument("results", metavar="RUN.jsonl")
@click.option("--out", metavar="DIR", default=None,
              help="Where the table and plots go [default: beside RUN.jsonl].")
@click.option("--gold", default=None, help="Which gold scorer to plot [default: the first].")
def report(results: str, out: str | None, gold: str | None) -> None:
    """Summary table (mean ± standard error per method) and plots from a results JSONL:
    gold reward vs KL (the frontier), gold reward vs base tokens, per-method bars.

    Every row in the file is reported (old sweep points and seeds included); a label used with
    two settings shows as two methods, told apart by their hash."""
    from w2s.evaluate.report import check_rows, write_report
    from w2s.evaluate.store import read_rows

    path = Path(results)
    rows = read_rows(path)
    check_rows(rows, str(path))
    paths = write_report(rows, Path(out) if out else path.parent, gold=gold)
    click.echo(f"table: {paths['markdown']}" + _plots_line(paths))


def _plots_line(paths: dict[str, Any]) -> str:
    shown = [str(p) for p in paths["plots"]] + [str(p) for p in paths["alpaca_eval"]]
    return f"  files: {', '.join(shown)}" if shown else "  (no gold scorer: no plots)"


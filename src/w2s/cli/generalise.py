"""``w2s generalise``: weak-to-strong generalisation on human-labelled data, resumable."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from w2s.cli.group import cli
from w2s.errors import FieldError, W2SError


@cli.command()
@click.argument("config", metavar="CONFIG")
@click.option("--out", metavar="DIR", default=None,
              help="Folder for the features, each step's record, the reward models and the "
              "report [default: runs/generalise-<name>].")
@click.option("--restart", is_flag=True, help="Discard what --out holds and start over.")
@click.option("--features-from", metavar="DIR", default=None,
              help="Another run's folder: its features of the same models, texts and settings "
              "are copied, not extracted again (a variant of a config in seconds).")
@click.option("--no-progress", is_flag=True, help="No progress bars; one line per step (logs).")
def generalise(config: str, out: str | None, restart: bool, features_from: str | None,
               no_progress: bool) -> None:
    """Weak-to-strong generalisation (Burns et al.; Somerstep et al.) on human-labelled data.

    A weak model is trained on ground truth and labels strong-train; the strong model is
    trained on those labels with each method (naive, aux_conf, gce, bootstrap, refine); the
    ceiling is the strong model on ground truth. Reported on test: accuracy, ROC AUC,
    calibration, PGR = (student - weak) / (ceiling - weak) with bootstrap intervals over test
    items and training seeds, and the deception split. In the pairwise form the students are
    reward models, exported as guides, and (with search:) guide Best-of-N and CBS.

    CONFIG is a YAML/TOML file or a shipped one: movies and tweets (binary, probes on
    SmolLM2-135M's features, supervised by the zoo), reward (pairwise, then search),
    finetune (the fine-tuning path). Every step is written when it finishes; rerunning the
    same command resumes, and on a finished folder prints the report again.

    \b
    Examples:
      w2s zoo get smollm2                       # the strong model, once
      w2s generalise movies --out runs/movies   # about 10 minutes on 2 cores
      w2s generalise reward --out runs/reward   # reward models, then search with them
    """
    from w2s.generalise.config import load_config
    from w2s.generalise.protocol import run_generalise

    try:
        cfg, path = load_config(config)
    except FieldError as e:  # a config's key path, not a flag
        raise W2SError(str(e)) from None
    out_dir = Path(out) if out else Path("runs") / f"generalise-{cfg.name}"

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    try:
        report = run_generalise(cfg, path, out_dir, restart=restart,
                                show_progress=not no_progress, log=log,
                                features_from=Path(features_from) if features_from else None)
    except KeyboardInterrupt:
        click.echo(f"interrupted: every finished step is in {out_dir}; run the same command "
                   "again to resume", err=True)
        sys.exit(130)
    g = report["pgr"]["gap"]
    click.echo(f"ceiling - weak: {g['value']:+.3f} ± {g['se']:.3f} ({g['z']:.1f} SE)"
               + ("" if g["z"] >= 5 else "; under 5 SE, so PGR is not well defined here"))
    for name, row in report["pgr"]["students"].items():
        p = row["pgr"]
        pgr = "undefined" if p["value"] != p["value"] else \
            f"{p['value']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]"
        click.echo(f"  {name.removeprefix('student-'):<12} accuracy {row['accuracy']:.3f}  "
                   f"PGR {pgr}")
    click.echo(f"report: {out_dir / 'report.md'}  plots: {out_dir / 'pgr.png'}, "
               f"{out_dir / 'sizes.png'}, {out_dir / 'deception.png'}")

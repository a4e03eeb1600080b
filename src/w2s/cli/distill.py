"""``w2s distill``: keep the gain without the search.

``w2s distill data`` runs one request (the same flags as ``generate``) over a prompt set and
writes TRL-native datasets (:mod:`w2s.distill`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from w2s.cli.group import cli
from w2s.cli.options import read_prompts
from w2s.cli.requests import RequestCommand, build_request, loader_of, request_options


def train_options(f: Any, *, in_rounds: bool = False) -> Any:
    """The training flags ``distill train`` and ``distill rounds`` share (in ``rounds``, the
    request's --seed, --batch-size, --beta and --device are the request's: training takes
    --train-seed, --train-batch-size and --dpo-beta, and the request's device)."""
    options = [
        click.option("--trainer", type=click.Choice(["sft", "dpo", "kto"]), default="sft",
                     show_default=True,
                     help="TRL's SFTTrainer on sft.jsonl, DPOTrainer on preference.jsonl, or "
                     "KTOTrainer on kto.jsonl."),
        click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     show_default=True, help="Passes over the data."),
        click.option("--learning-rate", type=click.FloatRange(min=0, max=1, min_open=True,
                                                              max_open=True),
                     default=1e-5, show_default=True,
                     help="Peak learning rate (linear decay)."),
        click.option("--train-batch-size" if in_rounds else "--batch-size", "train_batch_size",
                     type=click.IntRange(min=1), default=8, show_default=True,
                     help="Rows per optimizer step."),
        click.option("--train-seed" if in_rounds else "--seed", "train_seed", type=int,
                     default=0, show_default=True,
                     help="Seed for initialisation, data order and dropout."),
        click.option("--dpo-beta" if in_rounds else "--beta", "dpo_beta",
                     type=click.FloatRange(min=0, min_open=True), default=0.1,
                     show_default=True, help="DPO's and KTO's KL weight."),
        click.option("--lora", is_flag=True,
                     help="Train LoRA adapters (peft), merged at the end."),
        click.option("--lora-r", type=click.IntRange(min=1), default=16, show_default=True,
                     help="LoRA rank."),
        click.option("--max-length", type=click.IntRange(min=8), default=512,
                     show_default=True,
                     help="Tokens per training sequence (longer ones are cut)."),
        click.option("--save-steps", type=click.IntRange(min=1), default=50,
                     show_default=True,
                     help="Checkpoint every N steps (what a rerun resumes from)."),
    ]
    if not in_rounds:
        options.append(click.option("--device", default="auto", show_default=True,
                                    help="auto (a CUDA GPU when torch sees one), cpu or "
                                    "cuda."))
    for option in reversed(options):
        f = option(f)
    return f


def _train_plan(o: dict[str, Any], data: str, student: str) -> Any:
    from w2s.distill.train import TrainPlan

    return TrainPlan(data, student, o.pop("trainer"), o.pop("epochs"), o.pop("learning_rate"),
                     o.pop("train_batch_size"), o.pop("train_seed"), o.pop("dpo_beta"),
                     o.pop("lora"), o.pop("lora_r"), o.pop("max_length"), o.pop("save_steps"))


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
@click.option("--rank-by", type=click.Choice(["vader", "textblob", "objectivity"]),
              help="Order each prompt's candidates by this gold scorer instead of the guide: "
              "the answers the gold reward would choose (a weak-to-strong ceiling).")
@click.option("--demos", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE", help="Plain-text SFT rows (e.g. a weak model's sft.jsonl) shown "
              "in context before each prompt, --shots of them: in-context refinement of weak "
              "labels. The rows keep the bare prompt.")
@click.option("--shots", type=click.IntRange(min=1), metavar="N",
              help="Demonstrations per prompt with --demos.  [default: 4]")
@click.option("--answers", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="N", help="SFT rows per (seed, prompt): the search's N best distinct "
              "candidates, best first (a ranked method; fewer when it found fewer). A rerun "
              "with another N rewrites sft.jsonl without searching again.")
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
    from w2s.distill.data import answers_summary, read_demos

    out, seeds, pairs = o.pop("out"), o.pop("seeds"), o.pop("pairs")
    rank_by, demos, shots = o.pop("rank_by"), o.pop("demos"), o.pop("shots")
    if shots is not None and demos is None:
        raise click.UsageError("--shots counts demonstrations; give them with --demos FILE")
    gold, restart, quiet = o.pop("gold"), o.pop("restart"), o.pop("no_progress")
    answers = o.pop("answers")
    if o.pop("return_all"):
        raise click.UsageError("--return-all is implied here: distill data keeps every "
                               "candidate of a ranked method")
    request = build_request(o, return_all=False)
    prompts = read_prompts(o["prompt"], o["prompts_file"])
    plan = DistillPlan(request, prompts, seeds, None if pairs == "none" else pairs, tuple(gold),
                       rank_by=rank_by, demos=read_demos(demos) if demos else (),
                       shots=shots or 4, answers=answers)
    counts = run_distill_data(plan, out, loader=loader_of(o), restart=restart,
                              show_progress=not quiet)
    made = ", ".join(f"{n} {name} rows" for name, n in counts.items())
    click.echo(f"{made} in {out}")
    click.echo(f"the SFT answers: {_scores(answers_summary(out, plan.gold), plan.gold)}")


def _scores(r: dict[str, Any], names: Any) -> str:
    """Scores, then distinct-2, each with its SE: a gain bought with repetition shows."""
    shown = [f"{k} {r[k]:+.3f} ± {r[k + '_se']:.3f}" for k in names if k in r]
    return ", ".join([*shown, f"distinct-2 {r['distinct_2']:.3f} ± {r['distinct_2_se']:.3f}"])


@distill.command("train")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--student", metavar="MODEL",
              help="The model to fine-tune [default: the base that wrote DATA]: a folder, "
              "zoo:ROLE or a hub id with that base's tokenizer.")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Folder for the student (a transformers folder), its model card and "
              "train.json; a rerun after a kill resumes from the last checkpoint.")
@train_options
@click.option("--min-distinct", type=float, metavar="F",
              help="Early stop on held-out diversity: sample the student on "
              "--guard-prompts-file before training and after each epoch (or --guard-steps), "
              "stop at the first distinct-2 under F and keep the last evaluation at or above "
              "it. Every evaluation is logged in train.json.")
@click.option("--guard-prompts-file", type=click.Path(exists=True, dir_okay=False,
                                                      path_type=Path),
              metavar="FILE.jsonl", help="Held-out prompts (none a training prompt) the "
              "--min-distinct guard samples the student on.")
@click.option("--guard-steps", type=int, metavar="N",
              help="Evaluate the guard every N optimizer steps.  [default: each epoch]")
@click.option("--restart", is_flag=True, help="Discard this folder's earlier run first.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def train(**o: Any) -> None:
    """Fine-tune a student on a `distill data` folder with TRL (SFT, DPO or KTO).

    \b
    Example:
      w2s distill train data/cbs --out students/cbs-sft --epochs 2 --learning-rate 5e-5
      w2s generate --base students/cbs-sft --method sample --prompt "The movie was"
    """
    from w2s.distill.train import train_student

    data_dir, out = o.pop("data_dir"), o.pop("out")
    student = o.pop("student") or ""
    device = o.pop("device")
    plan = dataclasses.replace(_train_plan(o, str(data_dir), student),
                               min_distinct=o.pop("min_distinct"),
                               guard_prompts=_guard_prompts(o.pop("guard_prompts_file")),
                               guard_steps=o.pop("guard_steps"))
    s = train_student(plan, out, restart=o["restart"], device=device,
                      show_progress=not o["no_progress"])
    click.echo(f"trained {s['steps']} steps on {s['rows']} rows in {s['seconds']:.0f} s "
               f"(final loss {s['train_loss']:.4f}); the student is in {out}")
    if "guard" in s:
        _echo_guard(s)


def _guard_prompts(path: Path | None) -> tuple[str, ...]:
    return tuple(read_prompts((), str(path))) if path is not None else ()


def _echo_guard(s: dict[str, Any]) -> None:
    """The guard's curve, one line per held-out evaluation, and where and why it stopped."""
    from w2s.distill.guard import Guard

    g = s["guard"]
    golds = [k for k in (g["evaluations"][0] if g["evaluations"] else {})
             if k not in ("step", "distinct_2", "kept")]
    for e in g["evaluations"]:
        gold = "".join(f", {k} {e[k]:+.3f}" for k in golds)
        click.echo(f"  step {e['step']:>5}: held-out distinct-2 {e['distinct_2']:.3f}{gold}"
                   + ("" if e["kept"] else "  (under the floor)"))
    guard = Guard(g["min_distinct"], evaluations=g["evaluations"], kept=g["kept_step"],
                  stopped=g["stopped_at"])
    click.echo(guard.line() or f"the guard never fired: held-out distinct-2 stayed at or "
               f"above {g['min_distinct']:g}")


@distill.command("rounds", cls=RequestCommand)
@request_options
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Folder for round-R/data, round-R/student and rounds.json; a rerun resumes.")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Grow (search with the last student as the base) and improve (train "
              "it) this many times.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sampling seeds per training prompt and round.")
@click.option("--gold", multiple=True, type=click.Choice(["vader", "textblob", "objectivity"]),
              help="Score the data and each round's student with this gold scorer too.")
@click.option("--eval-prompts-file", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path), required=True,
              metavar="FILE.jsonl", help="Held-out prompts each round's student is sampled "
              "on, plainly (none may be a training prompt).")
@click.option("--eval-seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sampling seeds per held-out prompt.")
@click.option("--answers", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="N", help="SFT rows per training prompt and seed each round: the "
              "search's N best distinct candidates.")
@lambda f: train_options(f, in_rounds=True)
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def rounds(**o: Any) -> None:
    """ReST / RAFT: search with the student as the base, train it on the best, repeat.

    Round r runs the method (and guide) with round r-1's student as the base (round 1: the
    base), writes its TRL datasets and trains that student on them; each round's student is
    then sampled plainly on held-out prompts and scored (the guide, --gold). DIR/rounds.json
    holds every round's scores, round 0 being the base.

    \b
    Example:
      w2s distill rounds --base zoo:base --tuned zoo:tuned --untuned zoo:untuned \\
          --method cbs --prompts-file train.jsonl --eval-prompts-file test.jsonl \\
          --rounds 2 --gold vader --epochs 2 --learning-rate 5e-5 --out rounds/cbs
    """
    from w2s.distill import DistillPlan
    from w2s.distill.rounds import RoundsPlan, run_rounds

    out, n, seeds, gold = o.pop("out"), o.pop("rounds"), o.pop("seeds"), o.pop("gold")
    eval_file, eval_seeds, quiet = o.pop("eval_prompts_file"), o.pop("eval_seeds"), \
        o.pop("no_progress")
    if o.pop("return_all"):
        raise click.UsageError("--return-all is implied here: rounds keep every candidate of "
                               "a ranked method")
    train = _train_plan(o, "", "")
    request = build_request(o, return_all=False)
    prompts = read_prompts(o["prompt"], o["prompts_file"])
    ranked = request.spec.ranked
    data = DistillPlan(request, prompts, seeds, "best-worst" if ranked else None, tuple(gold),
                       answers=o.pop("answers"))
    plan = RoundsPlan(data, train, n, read_prompts((), str(eval_file)), eval_seeds)
    done = run_rounds(plan, out, device=o["device"], loader=loader_of(o),
                      show_progress=not quiet)
    for r in done:
        teacher = (f"; its data (the search's answers, training prompts): "
                   f"{_scores(r['teacher'], gold)}" if "teacher" in r else "")
        if "distinct_2" not in r:  # a round evaluated before distinct-2 was recorded
            r = {**r, "distinct_2": float("nan"), "distinct_2_se": float("nan")}
        click.echo(f"round {r['round']}: {_scores(r, ['guide', *gold])}{teacher}")
    click.echo(f"rounds in {out} ({out / 'rounds.json'})")

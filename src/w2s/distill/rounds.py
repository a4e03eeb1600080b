"""``w2s distill rounds``: ReST / RAFT -- grow with the search, improve by training, repeat.

Round ``r`` runs the request (its method and guide) with round ``r - 1``'s student as the base,
keeps what the search ranked best (the SFT rows; best-against-worst pairs for DPO), and trains
that student on it (Gulcehre et al. 2023, ReST; Dong et al. 2023, RAFT; round 0's "student" is
the request's base). Each round's student is then sampled *plainly* on held-out prompts and
scored by the guide and the gold scorers, so a reader sees what the rounds buy without the
search. Every step resumes: a round's data folder is the distill store, its training resumes
from its checkpoint, a finished round is not redone, and ``rounds.json`` is rewritten (through
a temporary file) after each round.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2s.distill.data import (
    DistillPlan,
    answers_summary,
    check_prompts,
    diversity,
    run_distill_data,
)
from w2s.distill.train import TRAIN, TrainPlan, train_student
from w2s.errors import W2SError
from w2s.evaluate.stats import prompt_mean_se
from w2s.request import BaseRef, Loader

SUMMARY = "rounds.json"


@dataclass(frozen=True)
class RoundsPlan:
    """``rounds`` of distill data (``data``, its base the first student) then training
    (``train``: its ``data`` and ``student`` are set per round), each student evaluated on
    ``eval_prompts`` x ``eval_seeds`` by plain sampling."""

    data: DistillPlan
    train: TrainPlan
    rounds: int
    eval_prompts: list[str]
    eval_seeds: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise W2SError(f"rounds must be an integer >= 1, got {self.rounds!r}")
        if (isinstance(self.eval_seeds, bool) or not isinstance(self.eval_seeds, int)
                or self.eval_seeds < 1):
            raise W2SError(f"eval_seeds must be an integer >= 1, got {self.eval_seeds!r}")
        check_prompts(self.eval_prompts)
        leak = set(self.eval_prompts) & set(self.data.prompts)
        if leak:
            raise W2SError(f"{len(leak)} evaluation prompts are also training prompts (e.g. "
                           f"{sorted(leak)[0][:40]!r}); hold the evaluation prompts out")
        base = self.data.request.base
        assert base is not None
        if base.engine:
            raise W2SError("rounds train the base and sample from the student in process: give "
                           "the base as a model (--base), not an engine URL")


def evaluate_student(plan: RoundsPlan, student: str, loader: Loader) -> dict[str, Any]:
    """Plain samples of ``student`` on the held-out prompts: the guide's and each gold
    scorer's mean and standard error over prompts (seeds averaged first, as every report
    does), and the tokens sampled."""
    import w2s
    from w2s.tasks.gold import GOLD_SCORERS

    req = plan.data.request
    model = loader.lm(student)
    guide = loader.guide(req.guide)
    prompts, texts, ended, index, tokens = [], [], [], [], 0
    for seed in range(plan.eval_seeds):
        sp = dataclasses.replace(req.sampling, seed=seed)
        for i, r in enumerate(w2s.sample(model, None, plan.eval_prompts, sp)):
            prompts.append(r.prompt)
            texts.append(r.text)
            ended.append(r.finished)
            index.append(i)
            tokens += len(r.token_ids)
    scores: dict[str, list[float]] = {}
    if guide is not None:
        scores["guide"] = guide.score(prompts, texts, ended).tolist()
    for g in plan.data.gold:
        scores[g] = list(GOLD_SCORERS[g](texts))
    out: dict[str, Any] = {"model": student, "samples": len(texts), "tokens": tokens}
    for name, xs in scores.items():  # over prompts, each prompt's seeds averaged first
        rows = [{"prompt_index": i, "v": x} for i, x in zip(index, xs)]
        out[name], out[f"{name}_se"] = prompt_mean_se(rows, lambda r: r["v"]) or (0.0, 0.0)
    out["distinct_2"], out["distinct_2_se"] = diversity(
        [{"prompt_index": i, "text": t} for i, t in zip(index, texts)])
    return out


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _trained(folder: Path, plan: TrainPlan) -> bool:
    path = folder / TRAIN
    if not path.is_file():
        return False
    had = json.loads(path.read_text(encoding="utf-8"))
    return bool(had.get("done")) and had.get("plan") == plan.identity()


def run_rounds(plan: RoundsPlan, out: Path, *, device: str = "auto",
               loader: Loader | None = None, show_progress: bool = True
               ) -> list[dict[str, Any]]:
    """Run (or resume) every round into ``out/round-R/{data,student}``; returns the
    evaluations, round 0 (the base) first, as ``rounds.json`` holds them."""
    from w2s.evaluate.run import check_out_dir

    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    req = plan.data.request
    assert req.base is not None
    loader = loader or Loader(chat=req.chat)
    summary_path = out / SUMMARY
    try:
        had = (json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file()
               else {})
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise W2SError(f"{summary_path} is not valid JSON (a torn write?); use another --out"
                       ) from None
    identity = {"data": plan.data.manifest(), "train": plan.train.identity() | {"data": None, "student": None},
                "eval_prompts": len(plan.eval_prompts), "eval_seeds": plan.eval_seeds}
    if plan.data.answers != 1:  # only when set: earlier folders keep their identity
        identity["answers"] = plan.data.answers
    if had and had.get("plan") != identity:
        raise W2SError(f"{out} holds other rounds (another request, training or evaluation); "
                       "use another --out")
    done: list[dict[str, Any]] = had.get("rounds", [])
    if not done:
        done.append({"round": 0, **evaluate_student(plan, req.base.model, loader)})
        _atomic_json(summary_path, {"plan": identity, "rounds": done})
    student = req.base.model
    for r in range(1, plan.rounds + 1):
        folder = out / f"round-{r}"
        if r < len(done):  # evaluated already: its student is the next round's base
            student = str(folder / "student")
            continue
        data_plan = dataclasses.replace(plan.data, request=dataclasses.replace(
            req, base=BaseRef(student)))
        run_distill_data(data_plan, folder / "data", loader=loader,
                         show_progress=show_progress)
        train_plan = dataclasses.replace(plan.train, data=str(folder / "data"), student=student)
        if not _trained(folder / "student", train_plan):
            train_student(train_plan, folder / "student", device=device,
                          show_progress=show_progress)
        student = str(folder / "student")
        done.append({"round": r, **evaluate_student(plan, student, loader),
                     "teacher": answers_summary(folder / "data", plan.data.gold)})
        _atomic_json(summary_path, {"plan": identity, "rounds": done})
    return done

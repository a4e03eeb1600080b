"""Early stopping on held-out diversity: ``distill train --min-distinct F``.

Why: SFT on a search's answers over-optimises. On the zoo a student trained on CBS's answers
beats CBS on every sentiment scorer while its distinct-bigram ratio falls from CBS's 0.64 to
0.33 ("a good movie, a good film ..."): the scorers reward the collapse, so the score alone
cannot stop it. The guard samples the student plainly on a few held-out prompts (the data's
sampling settings, seed 0) before training and after every evaluation interval (each epoch, or
every N optimizer steps, and at the last step), records distinct-2 and the data's gold scores,
and applies one rule:

- an evaluation at or above the floor is *kept*: its trainable weights are saved
  (``guard-kept.pt`` in the output folder, so a resumed run still has them);
- the first evaluation below the floor stops training, and the student is the last kept
  evaluation's weights (possibly the untrained student's, step 0, when the first interval
  already fell under the floor);
- a student under the floor before any training is refused: the floor cannot be met.

Every evaluation lands in ``train.json`` (``guard.evaluations``) as it is made, so the curve
is visible while training runs. The sampling runs under a forked torch RNG, so a guard that
never fires leaves the weights bit for bit as they would be without it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s.errors import FieldError

KEPT = "guard-kept.pt"


@dataclass
class Guard:
    """The decision rule, apart from any model: :meth:`record` one evaluation at a time."""

    floor: float
    every: int | None = None
    """Evaluate every this many optimizer steps; None: at the end of each epoch."""
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    kept: int | None = None
    """The step whose weights the student ends with when training stops (the last kept)."""
    stopped: int | None = None
    """The step whose evaluation fell under the floor, or None."""

    def due(self, step: int, last: int, epoch_end: bool) -> bool:
        """Whether step ``step`` (of ``last``) is evaluated: not yet, and at its interval."""
        if self.evaluations and self.evaluations[-1]["step"] >= step:
            return False
        if step in (0, last):
            return True
        return epoch_end if self.every is None else step % self.every == 0

    def record(self, step: int, evaluation: dict[str, Any]) -> bool:
        """Log one evaluation; True when training must stop (it fell under the floor)."""
        passed = evaluation["distinct_2"] >= self.floor
        self.evaluations.append({"step": step, **evaluation, "kept": passed})
        if passed:
            self.kept = step
            return False
        if step == 0:
            raise FieldError("min_distinct", f"is {self.floor:g}, and the student's held-out "
                             f"distinct-2 before any training is already "
                             f"{evaluation['distinct_2']:.3f}; lower the floor")
        self.stopped = step
        return True

    def resume(self, had: Sequence[dict[str, Any]], step: int) -> None:
        """Take back the evaluations a killed run logged up to its checkpoint's ``step``
        (later ones are made again as training passes them)."""
        self.evaluations = [dict(e) for e in had if e["step"] <= step]
        kept = [e["step"] for e in self.evaluations if e["kept"]]
        self.kept = kept[-1] if kept else None

    def summary(self) -> dict[str, Any]:
        return {"min_distinct": self.floor, "every": self.every or "epoch",
                "evaluations": self.evaluations, "stopped_at": self.stopped,
                "kept_step": self.kept}

    def line(self) -> str | None:
        """One line saying that it stopped, where and why; None when it did not."""
        if self.stopped is None:
            return None
        bad = next(e for e in self.evaluations if e["step"] == self.stopped)
        good = next(e for e in self.evaluations if e["step"] == self.kept)
        return (f"stopped at step {self.stopped}: held-out distinct-2 {bad['distinct_2']:.3f} "
                f"fell under the floor {self.floor:g}; kept step {self.kept} (distinct-2 "
                f"{good['distinct_2']:.3f})")


def held_out(model: Any, tok: Any, prompts: Sequence[str], sampling: Any,
             golds: Sequence[str], chat: bool) -> dict[str, Any]:
    """Plain samples of the model in training on ``prompts``: distinct-2 over them and the
    mean of each gold scorer (the RNG forked, the model put back in training mode)."""
    import torch

    from w2s.decoding.sample import sample
    from w2s.evaluate.report import distinct_bigrams
    from w2s.models.hf import HFModel
    from w2s.tasks.gold import GOLD_SCORERS

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    wrapped = model.__dict__.get("forward")  # accelerate's mixed-precision autocast wrapper
    if wrapped is not None and "_original_forward" in model.__dict__:
        model.forward = model._original_forward  # the weights as a plain load will run them
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            texts = [r.text for r in sample(HFModel(model, tok, chat=chat), None, prompts,
                                            sampling)]
    finally:
        if wrapped is not None:
            model.forward = wrapped
        model.train()
    out: dict[str, Any] = {"distinct_2": distinct_bigrams(texts)}
    for g in golds:
        out[g] = statistics.fmean(GOLD_SCORERS[g](texts))
    return out


def snapshot(model: Any, path: Path) -> None:
    """The trainable weights (LoRA's adapters, or every weight) to ``path``."""
    import torch

    torch.save({k: v.detach().cpu() for k, v in model.named_parameters() if v.requires_grad},
               path)


def restore(model: Any, path: Path) -> None:
    import torch

    model.load_state_dict(torch.load(path, weights_only=True), strict=False)


def callback(guard: Guard, evaluate: Callable[[Any], dict[str, Any]], out: Path,
             log: Callable[[], None]) -> Any:
    """A ``transformers`` callback that runs the guard: evaluates (``evaluate(model)``), logs
    (``log()`` rewrites train.json), snapshots a kept step and stops training on a fall."""
    from transformers import TrainerCallback

    class DiversityGuard(TrainerCallback):  # type: ignore[misc]
        def _check(self, state: Any, control: Any, model: Any, epoch_end: bool) -> None:
            if not guard.due(state.global_step, state.max_steps, epoch_end):
                return
            stop = guard.record(state.global_step, evaluate(model))
            if not stop:
                snapshot(model, out / KEPT)
            log()
            control.should_training_stop = control.should_training_stop or stop

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                           **kw: Any) -> None:
            guard.resume(guard.evaluations, state.global_step)
            if not guard.evaluations:
                self._check(state, control, model, epoch_end=False)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                        **kw: Any) -> None:
            self._check(state, control, model, epoch_end=False)

        def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None,
                         **kw: Any) -> None:
            self._check(state, control, model, epoch_end=True)

    return DiversityGuard()

"""``w2s distill train``: fine-tune a student on a ``distill data`` folder with TRL.

Why TRL: its ``SFTTrainer``, ``DPOTrainer`` and ``KTOTrainer`` are what users of this field
already run, and they read the datasets ``distill data`` writes as they are. w2s adds what a
reproducible experiment needs around them:

- the student must share the tokenizer of the base that wrote the data (weak-to-strong
  distillation trains the strong model on its own, searched, text): checked before training;
- the run is seeded, and its folder names it (``train.json``): a rerun after a kill resumes
  from the last checkpoint, a finished or different run in the folder is refused;
- LoRA (peft) is merged into the weights at the end, so the student is a plain ``transformers``
  folder that ``w2s generate --base`` (or ``distill data`` for the next round) loads;
- a model card records the data (method, knobs, rows, scores), the trainer and its settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from w2s.distill.guard import KEPT
from w2s.errors import FieldError, W2SError
from w2s.quiet import quiet_checkpointing_rename

TRAIN = "train.json"
TRAINERS = ("sft", "dpo", "kto")
DATA = {"sft": "sft", "dpo": "preference", "kto": "kto"}
"""Which ``distill data`` file each trainer reads."""
KEEP = {"sft": ["prompt", "completion", "messages"], "dpo": ["prompt", "chosen", "rejected"],
        "kto": ["prompt", "completion", "label"]}
"""The columns each TRL trainer reads (the rows' scores and origin stay in the files)."""


@dataclass(frozen=True)
class TrainPlan:
    """One training run: which data, which student, which trainer and its settings."""

    data: str
    """A ``w2s distill data`` folder."""
    student: str = ""
    """The model to fine-tune (a folder, ``zoo:ROLE`` or a hub id); empty: the base that
    wrote the data (read from its ``distill.json``)."""
    trainer: Literal["sft", "dpo", "kto"] = "sft"
    epochs: float = 1.0
    learning_rate: float = 1e-5
    batch_size: int = 8
    seed: int = 0
    beta: float = 0.1
    """DPO's and KTO's KL weight."""
    lora: bool = False
    lora_r: int = 16
    max_length: int = 512
    save_steps: int = 50
    """Checkpoint every this many optimizer steps (what a rerun after a kill resumes from)."""
    min_distinct: float | None = None
    """Early stopping on held-out diversity (:mod:`w2s.distill.guard`): stop at the first
    evaluation whose distinct-2 on ``guard_prompts`` is under this floor, and keep the last
    evaluation at or above it. None: no guard."""
    guard_prompts: tuple[str, ...] = ()
    """Held-out prompts (none a training prompt) the guard samples the student on."""
    guard_steps: int | None = None
    """Evaluate every this many optimizer steps; None: at the end of each epoch."""

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise W2SError(f"trainer must be one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        finite = all(math.isfinite(v) for v in (self.epochs, self.learning_rate, self.beta))
        if not finite:  # inf would overflow in the trainer, and is not JSON in train.json
            bad = next(n for n in ("epochs", "learning_rate", "beta")
                       if not math.isfinite(getattr(self, n)))
            raise FieldError(bad, f"must be a finite number, got {getattr(self, bad)!r}")
        checks = [("epochs", self.epochs > 0), ("learning_rate", 0 < self.learning_rate < 1),
                  ("batch_size", self.batch_size >= 1), ("beta", self.beta > 0),
                  ("lora_r", self.lora_r >= 1), ("max_length", self.max_length >= 8),
                  ("save_steps", self.save_steps >= 1)]
        for name, ok in checks:
            if not ok:
                raise W2SError(f"{name} is out of range, got {getattr(self, name)!r}")
        if self.trainer == "kto" and self.batch_size < 2:
            raise W2SError("--trainer kto needs a batch size of at least 2 (KTO estimates its "
                           f"reference point from the other rows of a batch), got {self.batch_size}")
        self._check_guard()

    def _check_guard(self) -> None:
        if self.min_distinct is None:
            for name in ("guard_prompts", "guard_steps"):
                if getattr(self, name):
                    raise FieldError(name, "only serves the diversity guard; give its "
                                     "distinct-2 floor too")
            return
        floor = self.min_distinct
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) \
                or not (math.isfinite(floor) and 0 < floor <= 1):
            raise FieldError("min_distinct", f"is a distinct-2 ratio in (0, 1], got {floor!r}")
        if not self.guard_prompts:
            raise FieldError("guard_prompts", "is needed with a distinct-2 floor: held-out "
                             "prompts to sample the student on")
        from w2s.distill.data import check_prompts

        check_prompts(self.guard_prompts)
        steps = self.guard_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 1):
            raise FieldError("guard_steps", f"must be an integer >= 1, got {steps!r}")

    def identity(self) -> dict[str, Any]:
        """What must match to resume a folder; the guard only when set (earlier folders keep
        their identity), its prompts by count and digest."""
        made = {"format": 1, **asdict(self), "data": str(Path(self.data).resolve())}
        for name in ("min_distinct", "guard_prompts", "guard_steps"):
            made.pop(name)
        if self.min_distinct is not None:
            made["guard"] = {"min_distinct": self.min_distinct, "steps": self.guard_steps,
                             "prompts": len(self.guard_prompts), "sha256": hashlib.sha256(
                                 json.dumps(list(self.guard_prompts)).encode()).hexdigest()}
        return made


def _data_files(plan: TrainPlan) -> tuple[dict[str, Any], Path]:
    from w2s.distill.data import FILES, MANIFEST

    folder = Path(plan.data).expanduser()
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise W2SError(f"{folder} is not a w2s distill data folder (no {MANIFEST}); make one "
                       "with `w2s distill data`")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise W2SError(f"{manifest} is not valid JSON ({getattr(e, 'msg', e)}; a torn write?): "
                       "remake the folder with `w2s distill data`") from None
    if not isinstance(meta, dict):
        raise W2SError(f"{manifest} is not a distill data manifest (a JSON object): remake the "
                       "folder with `w2s distill data`")
    path = folder / FILES[DATA[plan.trainer]]
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        kind = {"sft": "SFT", "dpo": "preference", "kto": "KTO"}[plan.trainer]
        raise W2SError(f"{path} is missing or empty: --trainer {plan.trainer} needs {kind} "
                       "rows (run `w2s distill data` to the end"
                       + (")" if plan.trainer == "sft" else
                          ", with --pairs best-worst or vs-sample)"))
    return meta, path


def check_rows(path: Path) -> bool:
    """Every line of a data file is a JSON object (before ``datasets`` reads it, whose error
    names no line); True when the rows are chat conversations (``messages``)."""
    chat = False
    with path.open(encoding="utf-8", errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise W2SError(f"{path}:{n}: not a JSON row ({e.msg}); remake the folder "
                                   "with `w2s distill data`") from None
                if not isinstance(row, dict):
                    raise W2SError(f"{path}:{n}: a row must be a JSON object, got "
                                   f"{type(row).__name__}")
                chat = chat or "messages" in row or isinstance(row.get("prompt"), list)
        except UnicodeDecodeError:
            raise W2SError(f"{path}: not UTF-8 text; remake the folder with `w2s distill data`"
                           ) from None
    return chat


def require_training() -> None:
    """TRL and the libraries it reads data with are installed (the ``train`` extra)."""
    import importlib.util

    missing = [m for m in ("trl", "datasets", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise W2SError(f"distill train needs the train extra ({', '.join(missing)} missing): "
                       "pip install 'w2s[train]'")


def default_student(meta: dict[str, Any]) -> str:
    """The base that wrote the data, when it is a model this process can train."""
    base = meta.get("request", {}).get("base")
    if not isinstance(base, str):
        raise W2SError("give --student: the data's base is not a model this command can "
                       "load (an engine)")
    return base


def check_student(meta: dict[str, Any], tok: Any, student: str) -> None:
    """The student's tokenizer is the one of the base that wrote the data."""
    want = meta.get("base_tokenizer")
    if want is None:
        raise W2SError("the data folder does not record its base's tokenizer (an engine base "
                       "without --base-tokenizer); remake it with --base-tokenizer")
    from w2s.models.loading import tokenizer_fingerprint

    got = tokenizer_fingerprint(tok)
    if got != want:
        base = meta.get("request", {}).get("base")
        raise W2SError(f"the student {student!r} has another tokenizer than the base that wrote "
                       f"the data ({base!r}): fingerprint {got} vs {want}; train the data's "
                       "own base, or make the data with this student as the base")


def open_out(plan: TrainPlan, out: Path, restart: bool) -> bool:
    """Claim ``out``; True when a checkpoint of this very run is there to resume from."""
    if restart and out.exists():
        shutil.rmtree(out)
    path = out / TRAIN
    if path.is_file():
        try:
            had = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise W2SError(f"{path} is not valid JSON (a torn write?); use another --out, or "
                           "--restart to discard it") from None
        if had.get("plan") != plan.identity():
            raise W2SError(f"{out} holds another training run; use another --out, or "
                           "--restart to discard it")
        if had.get("done"):
            raise W2SError(f"{out} holds this run, finished; use --restart to train it again")
        return any(p.name.startswith("checkpoint-") for p in out.iterdir())
    if out.exists() and any(out.iterdir()):
        raise W2SError(f"{out} is not empty and holds no training run; give an empty or new "
                       "folder")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"plan": plan.identity(), "done": False}, indent=2,
                               allow_nan=False) + "\n", encoding="utf-8")
    return False


def train_student(plan: TrainPlan, out: Path, *, restart: bool = False, device: str = "auto",
                  show_progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``plan.student`` on the data with TRL; the merged model, its tokenizer, a
    model card and ``train.json`` (settings, time, peak memory, final loss) land in ``out``."""
    if device not in ("auto", "cpu", "cuda"):
        raise W2SError(f"distill train runs on auto, cpu or cuda, got {device!r} (choose the GPU "
                       "with CUDA_VISIBLE_DEVICES)")
    require_training()
    meta, path = _data_files(plan)
    chat = check_rows(path)
    from w2s.models.loading import load_tokenizer
    from w2s.models.resolve import resolve_model

    if not plan.student:
        plan = dataclasses.replace(plan, student=default_student(meta))
    folder = resolve_model(plan.student)
    tok = load_tokenizer(folder)
    check_student(meta, tok, plan.student)
    if chat and not getattr(tok, "chat_template", None):
        raise W2SError(f"{path} holds chat rows (messages), and the student {plan.student!r} has "
                       "no chat template to format them: train a chat model, or make the data "
                       "without --chat")
    check_held_out(plan)
    resume = open_out(plan, out, restart)  # written only now: every input checked
    guard, watch = _guard(plan, meta, tok, chat, out, resume)
    start = time.perf_counter()
    with quiet_checkpointing_rename():
        trainer = _trainer(plan, folder, tok, path, out, device, show_progress,
                           [watch] if watch is not None else [])
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    model = trainer.model
    if guard is not None and guard.stopped is not None:
        from w2s.distill.guard import restore

        restore(model, out / KEPT)  # the last evaluation at or above the floor
    if plan.lora:
        model = model.merge_and_unload()
    final = out / ".final"
    model.save_pretrained(final)
    tok.save_pretrained(final)
    for p in final.iterdir():
        os.replace(p, out / p.name)
    final.rmdir()
    for p in out.glob("checkpoint-*"):
        shutil.rmtree(p)
    summary = {"plan": plan.identity(), "done": True, "seconds": time.perf_counter() - start,
               "peak_rss_mib": _peak_mib(), "train_loss": float(result.training_loss),
               "steps": int(result.global_step), "rows": _rows(path), "data": meta,
               "resumed": resume, "device": trainer.args.device.type,
               "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16
               else "fp32"}
    if guard is not None:
        summary["guard"] = guard.summary()
        (out / KEPT).unlink(missing_ok=True)
    (out / "README.md").write_text(model_card(plan, summary), encoding="utf-8")
    (out / TRAIN).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n",
                             encoding="utf-8")
    return summary


def check_held_out(plan: TrainPlan) -> None:
    """The guard's prompts are none of the data's training prompts (a guard that samples
    training prompts measures memorisation, not the student)."""
    if not plan.guard_prompts:
        return
    from w2s.distill.data import RAW
    from w2s.evaluate.store import read_rows

    seen = {r.get("prompt") for r in read_rows(Path(plan.data).expanduser() / RAW)}
    leak = [p for p in plan.guard_prompts if p in seen]
    if leak:
        raise FieldError("guard_prompts", f"holds {len(leak)} training prompts of the data "
                         f"(e.g. {leak[0][:40]!r}); hold the guard's prompts out")


def _guard(plan: TrainPlan, meta: dict[str, Any], tok: Any, chat: bool, out: Path,
           resume: bool) -> tuple[Any, Any]:
    """The diversity guard and its trainer callback, or (None, None) without a floor; a
    resumed run takes back the evaluations its train.json logged."""
    if plan.min_distinct is None:
        return None, None
    from w2s.distill.guard import Guard, callback, held_out
    from w2s.request import parse_sampling

    guard = Guard(plan.min_distinct, plan.guard_steps)
    if resume:
        had = json.loads((out / TRAIN).read_text(encoding="utf-8")).get("guard") or {}
        guard.evaluations = list(had.get("evaluations", []))
    sampling = dataclasses.replace(parse_sampling(meta.get("request", {}).get("sampling")),
                                   seed=0)
    golds = [g for g in meta.get("gold") or [] if isinstance(g, str)]

    def log() -> None:
        tmp = out / (TRAIN + ".tmp")
        tmp.write_text(json.dumps({"plan": plan.identity(), "done": False,
                                   "guard": guard.summary()}, indent=2, allow_nan=False)
                       + "\n", encoding="utf-8")
        os.replace(tmp, out / TRAIN)

    def evaluate(model: Any) -> dict[str, Any]:
        return held_out(model, tok, plan.guard_prompts, sampling, golds, chat)

    return guard, callback(guard, evaluate, out, log)


def _rows(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _peak_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _trainer(plan: TrainPlan, folder: str, tok: Any, path: Path, out: Path, device: str,
             show_progress: bool, callbacks: list[Any]) -> Any:
    """TRL's trainer for the plan (LoRA through peft when asked), seeded."""
    import torch
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import AutoModelForCausalLM

    from w2s.models.loading import choose_device, quiet_loading

    disable_progress_bar()  # its per-step map bars; the trainer's own bar shows the training
    cpu = choose_device(device).type == "cpu"  # "auto" on a machine without a GPU too

    torch.manual_seed(plan.seed)

    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    keep = KEEP[plan.trainer]
    data = load_dataset("json", data_files=str(path), split="train")
    data = data.remove_columns([c for c in data.column_names if c not in keep])
    common = dict(output_dir=str(out), num_train_epochs=plan.epochs,
                  per_device_train_batch_size=plan.batch_size,
                  learning_rate=plan.learning_rate, seed=plan.seed, data_seed=plan.seed,
                  report_to=[], logging_steps=10, save_strategy="steps",
                  save_steps=plan.save_steps, save_total_limit=1, use_cpu=cpu,
                  disable_tqdm=not show_progress, max_length=plan.max_length)
    peft_config = None
    if plan.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=plan.lora_r, lora_alpha=2 * plan.lora_r,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    if plan.trainer == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=data,
                          processing_class=tok, peft_config=peft_config, callbacks=callbacks)
    if plan.trainer == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer(model=model, args=KTOConfig(**common, beta=plan.beta),
                          train_dataset=data, processing_class=tok, peft_config=peft_config,
                          callbacks=callbacks)
    from trl import DPOConfig, DPOTrainer

    return DPOTrainer(model=model, args=DPOConfig(**common, beta=plan.beta),
                      train_dataset=data, processing_class=tok, peft_config=peft_config,
                      callbacks=callbacks)


def model_card(plan: TrainPlan, s: dict[str, Any]) -> str:
    """What the student is, what it learned from, and how it was trained."""
    req = s["data"].get("request", {})
    knobs = ", ".join(f"{k}={v}" for k, v in (req.get("knobs") or {}).items())
    return "\n".join([
        "---", "library_name: transformers", "tags: [w2s, distillation, trl]", "---", "",
        f"# Student distilled by w2s ({plan.trainer.upper()})", "",
        f"Fine-tuned from `{plan.student}` with TRL's {plan.trainer.upper()} trainer on "
        f"{s['rows']} rows that `w2s distill data` wrote by running **{req.get('method')}**"
        f"{f' ({knobs})' if knobs else ''} over {s['data'].get('prompts')} prompts on the base "
        f"`{req.get('base')}`, guided by `{json.dumps(req.get('guide'))}`"
        + (f", each prompt's answer chosen by the gold scorer {s['data']['rank_by']}"
           if s["data"].get("rank_by") else "")
        + (f", with {s['data']['demos']['shots']} demonstrations in context"
           if s["data"].get("demos") else "")
        + f"{'' if plan.trainer == 'sft' else ' (pairs: ' + str(s['data'].get('pairs')) + ')'}.",
        "",
        f"- trainer: {plan.trainer}, epochs {plan.epochs:g}, learning rate "
        f"{plan.learning_rate:g}, batch {plan.batch_size}, seed {plan.seed}"
        + (f", beta {plan.beta:g}" if plan.trainer != "sft" else "")
        + (f", LoRA r={plan.lora_r} (merged)" if plan.lora else ""),
        f"- {s['steps']} steps, final training loss {s['train_loss']:.4f}, "
        f"{s['seconds']:.0f} s, peak memory {s['peak_rss_mib']:.0f} MiB, on "
        f"{s['device']} in {s['precision']}", "",
        *_guard_card(s), f"Settings and data manifest: `{TRAIN}`.", ""])


def _guard_card(s: dict[str, Any]) -> list[str]:
    """The guard's curve in the model card: every held-out evaluation, and where it stopped."""
    g = s.get("guard")
    if not g:
        return []
    curve = ", ".join(f"step {e['step']} {e['distinct_2']:.3f}" for e in g["evaluations"])
    end = (f"stopped at step {g['stopped_at']}, weights of step {g['kept_step']} kept"
           if g["stopped_at"] is not None else "never fell under it")
    return [f"Diversity guard: floor {g['min_distinct']:g} on held-out distinct-2 ({curve}); "
            f"{end}.", ""]

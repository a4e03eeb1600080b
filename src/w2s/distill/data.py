"""``w2s distill data``: run one request over a prompt set and write TRL-native datasets.

Why a raw store under the datasets: the search is the expensive part, so every finished
(seed, prompt) is appended to ``raw.jsonl`` at once (the eval store: a kill loses at most the
batch in flight, a rerun does only what is missing, and the folder's lock refuses a second
writer). ``distill.json`` names the run -- the request, the prompts' digest, the pairing and
the gold scorers -- so a folder that holds another run is refused, never mixed or overwritten.
``sft.jsonl``, ``preference.jsonl`` and ``kto.jsonl`` are written anew from the raw rows at
the end of every run (each through a temporary file, so a reader never sees half of one);
``datasets.load_dataset("json", data_files=...)`` reads each as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2s.distill.rows import (
    PAIRS,
    Pairs,
    Scored,
    Searched,
    kto_rows,
    pair_of,
    preference_row,
    sft_rows,
)
from w2s.errors import FieldError, W2SError
from w2s.params import identity
from w2s.request import Loader, Request
from w2s.textfile import strict_json

RAW, MANIFEST = "raw.jsonl", "distill.json"
DEMO_SEP = "\n###\n"
"""Between demonstrations, and (its first line) the response's stop string: a mark that
review text does not hold, so that a response may have paragraphs of its own."""
DEMO_STOP = DEMO_SEP.rstrip("\n")
LOCK = RAW + ".lock"
FILES = {"sft": "sft.jsonl", "preference": "preference.jsonl", "kto": "kto.jsonl"}


@dataclass(frozen=True)
class DistillPlan:
    """What a ``distill data`` run makes: the request, its prompts and seeds, the pairing."""

    request: Request
    prompts: list[str]
    seeds: int = 1
    pairs: Pairs | None = "best-worst"
    """How preference and KTO rows pair responses; None: SFT rows only."""
    gold: tuple[str, ...] = ()
    """Gold scorers (w2s.tasks.gold) to score every response with, beside the guide."""
    rank_by: str | None = None
    """A gold scorer that orders each prompt's candidates instead of the guide: the answers
    the gold reward itself would choose (the ceiling of a weak-to-strong experiment). It is
    added to ``gold`` when missing."""
    demos: tuple[tuple[str, str], ...] = ()
    """(prompt, completion) demonstrations, ``shots`` of them shown before each prompt: the
    base answers with weak labels in context (in-context refinement, Somerstep et al.)."""
    shots: int = 4
    answers: int = 1
    """SFT rows per (seed, prompt): the search's best distinct candidates, best first (more
    than one needs a ranked method). Not part of the run's identity: the raw rows hold every
    candidate, so a rerun with another count rewrites sft.jsonl without searching again."""

    def __post_init__(self) -> None:
        check_prompts(self.prompts)
        if isinstance(self.answers, bool) or not isinstance(self.answers, int) \
                or self.answers < 1:
            raise FieldError("answers", f"must be an integer >= 1, got {self.answers!r}")
        if self.answers > 1 and not self.request.spec.ranked:
            raise FieldError("answers", f"keeps {self.answers} candidates per prompt, and "
                             f"method {self.request.spec.name} returns one (use bon, cbs, ...)")
        if self.rank_by is not None and self.rank_by not in self.gold:
            object.__setattr__(self, "gold", (*self.gold, self.rank_by))
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise W2SError(f"seeds must be an integer >= 1, got {self.seeds!r}")
        if self.pairs is not None and self.pairs not in PAIRS:
            raise W2SError(f"pairs must be one of {', '.join(PAIRS)}, got {self.pairs!r}")
        from w2s.tasks.gold import GOLD_SCORERS

        for g in self.gold:
            if g not in GOLD_SCORERS:
                raise W2SError(f"unknown gold scorer {g!r}; use one of {', '.join(GOLD_SCORERS)}")
        if self.request.base is None:
            raise W2SError("the request names no base")
        spec = self.request.spec
        if self.pairs == "best-worst" and not spec.ranked:
            raise W2SError(f"--method {spec.name} returns one response per prompt; best-against-"
                           "worst preference rows need a ranked method (bon, cbs, ...), or "
                           "--pairs vs-sample, or --pairs none")
        if self.rank_by is not None and not spec.ranked:
            raise W2SError(f"--rank-by {self.rank_by} orders a method's candidates; --method "
                           f"{spec.name} returns one response per prompt (use bon, cbs, ...)")
        self._check_demos()

    def _check_demos(self) -> None:
        if isinstance(self.shots, bool) or not isinstance(self.shots, int) or self.shots < 1:
            raise W2SError(f"shots must be an integer >= 1, got {self.shots!r}")
        if not self.demos:
            return
        if self.request.chat:
            raise FieldError("demos", "shows plain-text demonstrations before each prompt, so "
                             "it cannot go with chat on")
        distinct = len({p for p, _ in self.demos})
        if distinct <= self.shots:
            raise W2SError(f"--shots {self.shots} needs more than {self.shots} demonstrations "
                           f"with distinct prompts (one may be the prompt itself); the file has "
                           f"{distinct}")

    def in_context(self, index: int, seed: int) -> str:
        """Prompt ``index`` after ``shots`` demonstrations of other prompts, drawn by (seed,
        index) so that a rerun shows the same ones; each demonstration is its prompt and
        completion as one text, then ``DEMO_SEP``."""
        prompt = self.prompts[index]
        pool = [d for d in self.demos if d[0] != prompt]
        chosen = random.Random(f"demos:{seed}:{index}").sample(pool, self.shots)
        shown = "".join(f"{p}{c}".replace(DEMO_STOP, " ").strip() + DEMO_SEP for p, c in chosen)
        return shown + prompt

    @property
    def ranked(self) -> bool:
        return self.request.spec.ranked

    def manifest(self) -> dict[str, Any]:
        """The run's identity: what must match for a folder to be resumed."""
        request = self.request.to_dict()
        request["sampling"] = identity(self.request.sampling)  # a new field keeps folders
        if self.request.knobs is not None:
            request["knobs"] = identity(self.request.knobs)
        if isinstance(request.get("base"), dict):
            request["base"].pop("api_key", None)
        digest = hashlib.sha256(json.dumps(self.prompts).encode()).hexdigest()
        made = {"format": 1, "request": request, "prompts": len(self.prompts),
                "prompts_sha256": digest, "pairs": self.pairs, "gold": list(self.gold)}
        if self.rank_by is not None:  # only when set: earlier folders keep their identity
            made["rank_by"] = self.rank_by
        if self.demos:
            made["demos"] = {"shots": self.shots, "count": len(self.demos), "sha256":
                             hashlib.sha256(json.dumps(self.demos).encode()).hexdigest()}
        return made

    def run_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.manifest(), sort_keys=True).encode()
                              ).hexdigest()[:12]


def check_prompts(prompts: Sequence[str]) -> None:
    """A prompt set is non-empty and has no prompt twice (a twice-trained prompt would weigh
    double and leak between seeds)."""
    if not prompts:
        raise W2SError("the prompt set is empty")
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise W2SError(f"prompt {i} is not a non-empty string")
        if p in seen:
            raise W2SError(f"prompt {i} repeats prompt {seen[p]} ({p[:40]!r}); give each "
                           "prompt once")
        seen[p] = i


def open_folder(plan: DistillPlan, out: Path, restart: bool) -> None:
    """Check that ``out`` (its lock held) can take this run: a folder holding another run (its
    manifest differs) or other files is refused; ``restart`` discards this folder's earlier
    rows and files."""
    path = out / MANIFEST
    if restart:
        for name in (RAW, MANIFEST, *FILES.values()):
            (out / name).unlink(missing_ok=True)
    if path.is_file():
        try:
            had = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise W2SError(f"{path} is not JSON; is {out} a w2s distill folder?") from None
        if had.get("run") != plan.run_hash():
            raise W2SError(f"{out} holds another distill run ({_differs(had, plan.manifest())});"
                           " use another --out, or --restart to discard it")
    elif any(p.name != LOCK for p in out.iterdir()):
        raise W2SError(f"{out} is not empty and holds no distill run; give an empty or new "
                       "folder")


def claim(plan: DistillPlan, out: Path) -> None:
    """Write ``distill.json`` (with the first rows: a run refused before it found anything
    leaves no claim behind)."""
    if not (out / MANIFEST).is_file():
        _atomic(out / MANIFEST, json.dumps({"run": plan.run_hash(), **plan.manifest(),
                                            "base_tokenizer": base_fingerprint(plan)},
                                           indent=2) + "\n")


def base_fingerprint(plan: DistillPlan) -> str | None:
    """The fingerprint of the tokenizer of the base that writes the data (None for an engine
    base named without --base-tokenizer): ``distill train`` checks its student against it."""
    from w2s.models.loading import load_tokenizer, tokenizer_fingerprint
    from w2s.models.resolve import resolve_model

    base = plan.request.base
    assert base is not None
    ref = base.tokenizer if base.engine else base.model
    return tokenizer_fingerprint(load_tokenizer(resolve_model(ref))) if ref else None


def _differs(had: dict[str, Any], now: dict[str, Any]) -> str:
    keys = [k for k in now if had.get(k) != now[k]]
    return "its " + ", ".join(keys) + (" differ" if len(keys) > 1 else " differs") if keys \
        else "another run id"


def run_distill_data(plan: DistillPlan, out: Path, *, loader: Loader | None = None,
                     restart: bool = False, show_progress: bool = True,
                     prompts_per_call: int | None = None) -> dict[str, int]:
    """Search every (seed, prompt) not yet in ``out``, append its raw row at once, then write
    the datasets; returns how many rows each file got."""
    from w2s.evaluate.run import check_out_dir, exclusive

    check_out_dir(out)
    new = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(out / LOCK):  # before anything is read or written: one writer
            open_folder(plan, out, restart)
            _search_missing(plan, out, loader or Loader(chat=plan.request.chat),
                            show_progress, prompts_per_call)
            return write_datasets(plan, out)
    except W2SError:
        if new and not (out / MANIFEST).exists():  # refused before any row: leave nothing
            shutil.rmtree(out, ignore_errors=True)  # (the lock file goes with its release)
        raise


def _search_missing(plan: DistillPlan, out: Path, loader: Loader, show_progress: bool,
                    prompts_per_call: int | None) -> None:
    from w2s.evaluate.run import progress_bar
    from w2s.evaluate.store import ResultStore

    store, run = ResultStore(out / RAW), plan.run_hash()
    todo = [(s, [i for i in range(len(plan.prompts)) if (run, s, i) not in store.done])
            for s in range(plan.seeds)]
    total = sum(len(t) for _, t in todo)
    if not total:
        return
    req = plan.request
    assert req.base is not None
    loader.check(req.base, req.guide)
    backend = loader.base(req.base)  # loaded now: a missing model fails before any work
    req.spec.check_guide(loader.guide(req.guide))
    rows = max(1, req.spec.rows_per_prompt(req.knobs))
    per_call = prompts_per_call or max(1, backend.batch_size // rows)
    golds = _golds(plan.gold)
    with progress_bar(show_progress) as bar:
        job = bar.add_task("distill data", total=total)
        for seed, idx in todo:
            for lo in range(0, len(idx), per_call):
                part = idx[lo: lo + per_call]
                found = _search(plan, loader, seed, part, golds)
                claim(plan, out)
                store.append({"hash": run, "seed": seed, "prompt_index": s.prompt_index,
                              "prompt": s.prompt,
                              "candidates": [c.to_dict() for c in s.candidates],
                              "sample": s.sample.to_dict() if s.sample else None}
                             for s in found)
                bar.update(job, advance=len(part), description=f"distill data, seed {seed}")


def _golds(names: Sequence[str]) -> dict[str, Callable[[list[str]], list[float]]]:
    from w2s.tasks.gold import GOLD_SCORERS

    return {n: GOLD_SCORERS[n] for n in names}


def _search(plan: DistillPlan, loader: Loader, seed: int, idx: list[int],
            golds: dict[str, Callable[[list[str]], list[float]]]) -> list[Searched]:
    """One request over the prompts ``idx`` (every candidate kept when the method ranks
    them), the plain samples when pairs are against them, every response gold-scored; both
    through :func:`w2s.request.run`, the path ``generate`` and ``eval`` take."""
    from w2s.request import Request, run

    req = plan.request
    sampling = dataclasses.replace(req.sampling, seed=seed)
    prompts = [plan.prompts[i] for i in idx]
    asked, searched = prompts, sampling
    if plan.demos:  # the base answers after demonstrations; the rows keep the bare prompt
        asked = [plan.in_context(i, seed) for i in idx]
        searched = dataclasses.replace(sampling, stop=tuple(dict.fromkeys(
            (*sampling.stop, DEMO_STOP))))
    results = run(dataclasses.replace(req, sampling=searched, return_all=plan.ranked), asked,
                  loader)
    samples = (run(Request("sample", None, sampling, req.base, None), prompts, loader)
               if plan.pairs == "vs-sample" else [None] * len(prompts))
    found = []
    for i, p, r, smp in zip(idx, prompts, results, samples):
        cands = [Scored(c.text, c.score, c.finished) for c in r.candidates]
        sample = Scored(smp.text, None, smp.finished) if smp is not None else None
        texts = [c.text for c in cands] + ([sample.text] if sample else [])
        scores = {name: fn(texts) for name, fn in golds.items()}
        cands = [dataclasses.replace(c, gold={n: float(v[j]) for n, v in scores.items()})
                 for j, c in enumerate(cands)]
        if sample is not None:
            sample = dataclasses.replace(sample, gold={n: float(v[-1]) for n, v in scores.items()})
        s = Searched(p, i, seed, cands, sample)
        if plan.pairs is not None:
            pair_of(s, plan.pairs)  # refused before anything is written
        found.append(s)
    return found


def read_searched(plan: DistillPlan, out: Path) -> list[Searched]:
    """This run's raw rows, in (seed, prompt) order."""
    from w2s.evaluate.store import read_rows

    run = plan.run_hash()
    got = []
    for n, r in enumerate(read_rows(out / RAW), 1):
        if r.get("hash") != run:
            continue
        try:
            got.append(Searched(r["prompt"], int(r["prompt_index"]), int(r["seed"]),
                                [Scored.from_dict(c) for c in r["candidates"]],
                                Scored.from_dict(r["sample"]) if r.get("sample") else None))
        except (KeyError, TypeError, ValueError):
            raise W2SError(f"{out / RAW}:{n}: not a distill row (a key is missing or of the "
                           "wrong type)") from None
    return sorted(got, key=lambda s: (s.seed, s.prompt_index))


def write_datasets(plan: DistillPlan, out: Path) -> dict[str, int]:
    """sft.jsonl, and with pairs preference.jsonl and kto.jsonl, from every raw row."""
    claim(plan, out)
    req = plan.request
    knobs = req.knobs.to_dict() if req.knobs is not None else {}
    method, chat = req.method, req.chat
    sft, pref, kto = [], [], []
    extra: dict[str, Any] = {}
    if plan.rank_by is not None:
        extra["rank_by"] = plan.rank_by
    if plan.demos:
        extra["in_context_shots"] = plan.shots
    for s in read_searched(plan, out):
        if plan.rank_by is not None:
            s = dataclasses.replace(s, candidates=by_gold(s.candidates, plan.rank_by))
        sft += sft_rows(s, method, knobs, chat, plan.answers)
        if plan.pairs is not None:
            row = preference_row(s, method, knobs, chat, plan.pairs)
            if row is not None:
                pref.append(row)
            kto += kto_rows(s, method, knobs, chat, plan.pairs)
    made = {"sft": sft} if plan.pairs is None else {"sft": sft, "preference": pref, "kto": kto}
    for rows in made.values():
        for r in rows:
            r.update(extra)
    for name, rows in made.items():
        _atomic(out / FILES[name], "".join(strict_json(r, ensure_ascii=False) + "\n"
                                           for r in rows))
    return {name: len(rows) for name, rows in made.items()}


def diversity(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Distinct-2 over every row's ``text``, with its jackknife SE over prompts."""
    from w2s.evaluate.report import distinct_bigrams
    from w2s.evaluate.stats import prompt_jackknife

    return prompt_jackknife(rows, lambda sel: distinct_bigrams([r["text"] for r in sel]))


def answers_summary(folder: Path, gold: Sequence[str]) -> dict[str, Any]:
    """What a student learns from (the teacher, beside the student's own evaluation): a data
    folder's SFT answers (on the training prompts), their distinct-2 and each gold scorer's
    mean and SE over prompts."""
    from w2s.evaluate.stats import prompt_mean_se
    from w2s.evaluate.store import read_rows

    rows = [{"prompt_index": r["prompt_index"], "gold": r.get("gold") or {},
             "text": r["completion"] if "completion" in r else r["messages"][-1]["content"]}
            for r in read_rows(folder / FILES["sft"])]
    out: dict[str, Any] = {"rows": len(rows)}
    for g in gold:
        out[g], out[f"{g}_se"] = prompt_mean_se(rows, lambda r, g=g: r["gold"].get(g)) \
            or (0.0, 0.0)
    out["distinct_2"], out["distinct_2_se"] = diversity(rows)
    return out


def by_gold(cands: Sequence[Scored], name: str) -> list[Scored]:
    """The candidates best first by the gold scorer ``name`` (ties keep the guide's order)."""
    return sorted(cands, key=lambda c: -c.gold[name])


def read_demos(path: Path) -> tuple[tuple[str, str], ...]:
    """(prompt, completion) pairs from a JSONL file of SFT rows (e.g. another ``distill
    data`` folder's sft.jsonl: the weak model's answers)."""
    from w2s.tasks.base import read_records

    found = []
    for n, row in enumerate(read_records(path), 1):
        if not (isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str)):
            raise W2SError(f"{path}: record {n}: a demonstration needs string 'prompt' and "
                           "'completion' fields (plain-text SFT rows)")
        found.append((row["prompt"], row["completion"]))
    if not found:
        raise W2SError(f"{path} holds no demonstrations")
    return tuple(found)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

"""``w2s eval``: run a sweep of methods over a task's prompts and seeds, resumably.

Prompts go through the backend in batches (as many per call as ``batch_size`` rows allow for the
method's W·K or N candidates); each finished batch's rows are appended to ``results.jsonl`` and
flushed before the next starts, so an interrupted run loses at most the batch in flight, and
rerunning the same command does only what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from w2s.errors import FieldError, W2SError
from w2s.evaluate.config import EvalConfig, MethodSpec
from w2s.evaluate.metrics import base_loglik, path_kl
from w2s.evaluate.store import ResultStore
from w2s.logits import same_vocabulary
from w2s.models.base import LogitsBackend, ScoringLM, TextScoringBackend

RESULTS = "results.jsonl"


class Models:
    """Loads each model once per run, whatever number of methods use it (one
    :class:`~w2s.request.Loader` for the run)."""

    def __init__(self, cfg: EvalConfig, chat: bool) -> None:
        from w2s.request import Loader

        self.cfg, self.chat = cfg, chat
        self.loader = Loader(dtype=cfg.dtype, device=cfg.device, chat=chat,
                             batch_size=cfg.batch_size, base_dir=cfg.base_dir,
                             device_map=cfg.device_map, guide_device=cfg.guide_device,
                             big=None if cfg.base.engine else cfg.base.model,
                             memory_limit=cfg.memory_limit)

    def base(self) -> Any:
        """The config's base: an in-process model, or a client of its engine."""
        return self.loader.base(self.cfg.base)

    def sampled_model(self, m: MethodSpec) -> Any:
        """The model a method samples from: the base, or (for ``sample``) another one."""
        assert m.request.base is not None  # a config point always names the model it samples
        return self.loader.base(m.request.base)

    def guide(self, m: MethodSpec) -> Any:
        return self.loader.guide(m.guide)


def candidates_per_prompt(m: MethodSpec) -> int:
    from w2s.decoding import get_decoder

    return get_decoder(m.method).rows_per_prompt(m.params)


def run_eval(cfg: EvalConfig, out: Path, *, limit: int | None = None, restart: bool = False,
             seeds: list[int] | None = None, show_progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) ``cfg`` into ``out/results.jsonl``; return this config's rows."""
    from w2s.tasks import build_task

    task = build_task(cfg.task, cfg.base_dir, dtype=cfg.dtype, device=cfg.device)
    n = min(limit or cfg.prompts or len(task.prompts), len(task.prompts))
    prompts = task.prompts[:n]
    seeds = seeds if seeds is not None else cfg.seeds
    chat = cfg.chat if cfg.chat is not None else task.chat
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / (RESULTS + ".lock")):
        try:
            return _run_locked(cfg, out, task, prompts, seeds, chat, restart, show_progress)
        except FieldError as e:  # a field's path is the config's key path: name the file
            raise W2SError(f"{cfg.path.name}: {e}") from None


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold ``lock`` for the whole run: a second ``w2s eval`` on the same folder would append
    every row again (and reports would count each prompt twice), so it is refused. The lock
    is the OS's (``fcntl.flock``): a killed run releases it at once. The file is removed on
    release, while still held, so a finished run leaves no ``.lock`` in its folder; a writer
    that opened it just before then holds a file no longer there, sees that, and retries."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before
        yield
        return
    while True:
        f = open(lock, "a+")  # noqa: SIM115 - held until the run ends
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "another process"
            f.close()
            raise W2SError(f"another w2s eval ({who}) is writing to {lock.parent}; wait for it "
                           "or use another --out") from None
        if _still_there(f, lock):
            break
        f.close()
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        yield
    finally:
        lock.unlink(missing_ok=True)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _still_there(f: Any, path: Path) -> bool:
    """Whether the open file ``f`` is still the file at ``path`` (not removed or replaced)."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(f.fileno())
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _run_locked(cfg: EvalConfig, out: Path, task: Any, prompts: list[str], seeds: list[int],
                chat: bool, restart: bool, show_progress: bool) -> list[dict[str, Any]]:
    n = len(prompts)
    path = out / RESULTS
    if restart and path.exists():
        path.unlink()
    store = ResultStore(path)
    for m in cfg.methods:
        store.check_compatible(m.label, m.hash)
    _check_same_prompts(store, prompts)
    plan = [(m, seed, [i for i in range(n) if (m.hash, seed, i) not in store.done])
            for m in cfg.methods for seed in seeds]
    total = sum(len(todo) for _, _, todo in plan)
    models = Models(cfg, chat)
    if total:
        from w2s.stages import shown_stages

        with shown_stages(show_progress):  # load everything up front: fail in seconds
            models.base()
            for m in cfg.methods:
                models.sampled_model(m)
                models.guide(m)
    with progress_bar(show_progress) as bar:
        job = bar.add_task("eval", total=total)
        for m, seed, todo in plan:
            per_call = max(1, cfg.batch_size // candidates_per_prompt(m))
            for lo in range(0, len(todo), per_call):
                bar.update(job, description=f"{m.label}, seed {seed}")
                idx = todo[lo: lo + per_call]
                store.append(run_batch(cfg, task, models, m, seed, idx, [prompts[i] for i in idx],
                                       traces=out / TRACES if cfg.trace else None))
                bar.advance(job, len(idx))
    label = {m.hash: m.label for m in cfg.methods}  # rows keep their hash; labels may be renamed
    return [{**r, "method": label[r["hash"]]} for r in store.rows
            if r.get("hash") in label and r["seed"] in seeds and r["prompt_index"] < n]


def _check_same_prompts(store: ResultStore, prompts: list[str]) -> None:
    """Rows are keyed by prompt position: refuse to resume over a prompt set that changed."""
    for r in store.rows:
        i = r.get("prompt_index", -1)
        if 0 <= i < len(prompts) and r.get("prompt") != prompts[i]:
            raise W2SError(f"{store.path} holds a different prompt #{i} than the task has now "
                           "(the prompt file changed?); use another --out, or --restart")


def run_batch(cfg: EvalConfig, task: Any, models: Models, m: MethodSpec, seed: int,
              idx: list[int], prompts: list[str], traces: Path | None = None
              ) -> list[dict[str, Any]]:
    """Decode one batch of prompts with one method and seed; one metrics row per prompt
    (with ``traces``, each prompt's search trace is written under it and its row names it)."""
    from w2s.decoding import get_decoder

    spec = get_decoder(m.method)
    base = models.base()
    backend = models.sampled_model(m)
    sampling = dataclasses.replace(m.sampling, seed=seed)
    request = dataclasses.replace(m.request, sampling=sampling)
    _reset_peak(base)
    t0 = time.perf_counter()
    results, trace_paths = _decode(request, prompts, models, traces, m.hash, seed, idx)
    wall = time.perf_counter() - t0
    texts = [r.text for r in results]
    golds = {name: fn(prompts, texts) for name, fn in task.golds.items()}
    by_base = backend is base
    ll, n_tokens = _base_loglik(base, backend, prompts, results, by_base)
    kl, kind = _kl(spec.kl, results, backend, base, prompts, by_base, sampling.temperature)
    if kind == "exact" and sampling.truncates:
        kind = "untruncated"  # the KL of the distributions before top-k/top-p truncation
    peak = _peak_mib(base)
    rows = []
    for j, (i, p, r) in enumerate(zip(idx, prompts, results)):
        rows.append({
            "run": cfg.name, "task": task.name, "method": m.label, "method_name": m.method,
            "hash": m.hash, "seed": seed, "prompt_index": i, "prompt": p, "response": r.text,
            "finished": r.finished,
            "gold": {name: vals[j] for name, vals in golds.items()},
            "guide_score": r.score,
            "base_logp": ll[j], "response_tokens": n_tokens[j],
            "base_logp_per_token": ll[j] / n_tokens[j] if n_tokens[j] else None,
            "kl": kl[j], "kl_kind": kind,
            "base_tokens": r.cost.base_tokens if by_base else 0,
            "small_tokens": 0 if by_base else r.cost.base_tokens,
            "guide_tokens": r.cost.guide_tokens,
            "base_read": r.cost.base_read, "flops": r.cost.flops,
            "wall_time_s": wall / len(prompts), "peak_mem_mib": peak,
            "params": m.knobs(), "sampling": sampling.to_dict(),
            "models": {"base": cfg.base_label,
                       "guide": m.guide.to_dict() if m.guide is not None else None,
                       "sampled": m.model or cfg.base_label},
            "stats": r.stats,
            **({"budget": m.budget} if m.budget is not None else {}),
            **({"trace": trace_paths[j]} if trace_paths else {}),
        })
    return rows


TRACES = "traces"
"""The folder of an eval run's search traces (``trace: true``): ``HASH/SEED/I.json``."""


def _decode(request: Any, prompts: list[str], models: Models, traces: Path | None, hash_: str,
            seed: int, idx: list[int]) -> tuple[list[Any], list[str]]:
    """The results (the one path generate takes too) and, with ``traces``, each prompt's
    trace file, relative to the run's folder (rewritten by a resumed run: one per row)."""
    from w2s.request import run

    if traces is None:
        return run(request, prompts, models.loader), []
    import w2s.decoding.trace as trace

    with trace.recording() as rec:
        results = run(request, prompts, models.loader)
    folder = traces / hash_ / str(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, t in zip(idx, rec.traces):
        trace.write(folder / f"{i}.json", [t])
        paths.append(f"{TRACES}/{hash_}/{seed}/{i}.json")
    return results, paths


def _base_loglik(base: Any, backend: Any, prompts: list[str], results: list[Any],
                 by_base: bool) -> tuple[list[float], list[int]]:
    """Each response's log-likelihood under the base and its number of base tokens: of the
    sampled token ids (EOS included) for a white-box base, of the text for an engine's."""
    if isinstance(base, ScoringLM):
        ids = ([r.token_ids for r in results] if by_base
               else _in_base_tokens(base, backend, results))
        # a response written partly by another model (Nudging) has text but no base token ids:
        # score its text in the base's tokens, as for another model's response
        textual = [i for i, r in enumerate(results) if not ids[i] and r.text]
        for i, x in zip(textual, base.encode_responses([results[i].text for i in textual])):
            ids[i] = x
        return base_loglik(base, prompts, ids), [len(x) for x in ids]
    if isinstance(base, TextScoringBackend):
        pairs = base.loglik(prompts, [r.text for r in results])
        return [s for s, _ in pairs], [n for _, n in pairs]
    raise W2SError(f"the base {base.name!r} can score no text, so its log-likelihood of the "
                   "outputs cannot be reported")


def _in_base_tokens(base: Any, other: Any, results: list[Any]) -> list[list[int]]:
    """Another model's responses in the base's tokens, ended with the base's EOS where the
    other model ended on its own EOS: the same footing as the base's sampled token ids."""
    ids = base.encode_responses([r.text for r in results])
    eos = base.eos_id
    other_eos = other.eos_id if isinstance(other, ScoringLM) else None
    for x, r in zip(ids, results):
        if eos is not None and r.finished and r.token_ids and r.token_ids[-1] == other_eos:
            x.append(eos)
    return ids


def _kl(kind: str, results: list[Any], backend: Any, base: Any, prompts: list[str],
        by_base: bool, temperature: float) -> tuple[list[float | None], str]:
    """The KL each row reports: what the decoder's registry entry says it measures, or, for
    another model sampled in the base's place, the exact KL along its path from the base."""
    if not by_base:
        if (temperature > 0 and isinstance(base, LogitsBackend)
                and isinstance(backend, LogitsBackend) and same_vocabulary(backend, base)):
            return path_kl(backend, base, prompts, [r.token_ids for r in results],
                           temperature), "exact"
        return [None] * len(results), "none"
    if kind == "exact":
        return [r.stats.get("kl") for r in results], "exact"
    if kind == "bound":
        return [r.stats.get("kl_bound") for r in results], "bound"
    return [None] * len(results), "none"


def _reset_peak(base: Any) -> None:
    import torch

    if isinstance(base, LogitsBackend) and base.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(base.device)


def _peak_mib(base: Any) -> float:
    """Peak accelerator memory of the batch; on CPU the process's peak resident memory."""
    import torch

    if isinstance(base, LogitsBackend) and base.device.type == "cuda":
        return torch.cuda.max_memory_allocated(base.device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def progress_bar(show: bool) -> Any:
    """A rich bar with an ETA on stderr (off with --no-progress)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True, disable=not show)


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise W2SError(f"--out {str(out)!r} is a file; give a folder")

"""Many requests, one model: gather the ones that can share a decoder call, run them in order.

Why batch: a decoder call over 32 prompts costs far less than 32 calls (the base's forward
passes are batched). Requests are *compatible* when everything but the prompt is equal (method,
knobs, the guide's weights, sampling settings, seed included): then one call gives each of them exactly what it
would get alone, because every random number is a function of (seed, prompt, slot, position).
Unseeded requests share calls too (each call draws one fresh seed), one per prompt text.

The queue: a request waits up to ``gather_s`` for company, then its batch takes every queued
compatible request, in arrival order, up to ``max_rows`` candidate rows. One batch runs at a
time, in a worker thread (torch already uses every core). At most ``max_queue`` jobs wait (a
request is one job per prompt and choice); a request whose jobs would pass that is refused whole,
its own jobs counted (the server answers 429). A request whose client went away is dropped from
the queue, and a running batch stops at its next checkpoint once none of its clients waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import w2s.decoding.trace as trace
from w2s.decoding.observe import Cancelled, watching
from w2s.errors import W2SError
from w2s.result import Result


class Overloaded(Exception):
    """The queue is full: come back later."""


@dataclass(eq=False)
class Job:
    """One prompt of one request (a choice): what to run, and where its news goes."""

    prompt: str
    key: Hashable
    """Requests with equal keys may share one decoder call."""
    rows: int
    run: Callable[[list[str]], list[Result]]
    """Decode a batch of prompts (all jobs of a batch have equal keys, so any one's ``run``)."""
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future = field(init=False)
    events: asyncio.Queue | None = None
    """Set for streamed jobs: receives ``(job, committed_text)`` while the decode runs, then
    ``(job, None)`` when it is done (a request's jobs may share one queue)."""
    cancelled: bool = False
    fresh: bool = False
    """Unseeded: its call draws one fresh seed for all its prompts, so a call takes each
    prompt text once (two choices of one prompt in one call would be the same text)."""
    traced: bool = False
    """Record its search trace (jobs of a batch agree: it is part of ``key``); a streamed
    job's queue then also receives ``(job, {"nodes": [...], "kept": [...]})`` each round."""
    trace: dict | None = None
    """Its trace record (:mod:`w2s.decoding.trace`), set before ``done`` when ``traced``."""

    def __post_init__(self) -> None:
        self.done = self.loop.create_future()
        if self.events is not None:
            events = self.events
            self.done.add_done_callback(lambda _: events.put_nowait((self, None)))


class _BatchWatcher:
    """Routes a batch decoder's reports to its jobs' queues (from the worker thread)."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def committed(self, index: int, text: str) -> None:
        job = self.jobs[index]
        if job.events is not None and not job.cancelled:
            job.loop.call_soon_threadsafe(job.events.put_nowait, (job, text))

    def cancelled(self) -> bool:
        return all(j.cancelled for j in self.jobs)

    def traced(self, index: int, nodes: list[dict], kept: list[int]) -> None:
        """A round of job ``index``'s search: its new nodes, scored, and the ids now kept."""
        job = self.jobs[index]
        if job.events is not None and not job.cancelled:
            job.loop.call_soon_threadsafe(job.events.put_nowait,
                                          (job, {"nodes": nodes, "kept": kept}))


class Batcher:
    def __init__(self, *, max_rows: int, max_queue: int, gather_s: float = 0.01) -> None:
        self.max_rows, self.max_queue, self.gather_s = max_rows, max_queue, gather_s
        self.queue: list[Job] = []
        self.running: list[Job] = []
        self.stats = {"served": 0, "cancelled": 0, "batches": 0}
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="w2s-decode")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for j in self.running:
            j.cancelled = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, jobs: list[Job]) -> None:
        """Queue a request's jobs together, or refuse them all (:class:`Overloaded`)."""
        if len(self.queue) + len(jobs) > self.max_queue:  # the newcomer's own jobs count
            raise Overloaded(f"{len(self.queue)} choices are waiting and this request adds "
                             f"{len(jobs)}, over --max-queue {self.max_queue}; retry shortly")
        self.queue += jobs
        self._wake.set()

    def cancel(self, jobs: list[Job]) -> None:
        """The client went away: drop its queued jobs; running ones stop with their batch."""
        for j in jobs:
            if not j.cancelled and not j.done.done():
                j.cancelled = True
                self.stats["cancelled"] += 1
        self.queue = [j for j in self.queue if not j.cancelled]

    def status(self) -> dict[str, int]:
        live = [j for j in self.running if not j.cancelled]
        return {"running_rows": sum(j.rows for j in live), "running_requests": len(live),
                "queued_requests": len(self.queue), **self.stats}

    def _take(self) -> list[Job]:
        """The next batch: the oldest job and the queued jobs compatible with it."""
        first = self.queue[0]
        batch, rows, texts = [], 0, set()
        for j in self.queue:
            if (j.key == first.key and (not batch or rows + j.rows <= self.max_rows)
                    and not (j.fresh and j.prompt in texts)):
                batch.append(j)
                rows += j.rows
                texts.add(j.prompt)
        taken = set(map(id, batch))
        self.queue = [j for j in self.queue if id(j) not in taken]
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.gather_s)  # let the company of this request arrive
            self.queue = [j for j in self.queue if not j.cancelled]
            if not self.queue:
                continue
            batch = self._take()
            self.running = batch
            self.stats["batches"] += 1
            try:
                outcome = await loop.run_in_executor(self._pool, _run_batch, batch)
            finally:
                self.running = []
            for job, result in zip(batch, outcome):
                if job.done.done():
                    continue
                if isinstance(result, BaseException):
                    job.done.set_exception(result)
                else:
                    job.done.set_result(result)
                    self.stats["served"] += 1


def _run_batch(batch: list[Job]) -> list[Result | BaseException]:
    """One decoder call for the batch (worker thread). A user error in one prompt should not
    fail the others: the batch then runs job by job, so each gets its own answer or error."""
    try:
        watcher = _BatchWatcher(batch)
        with watching(watcher), (trace.recording(watcher.traced) if batch[0].traced
                                 else contextlib.nullcontext()) as rec:
            results = batch[0].run([j.prompt for j in batch])
        if rec is not None:
            for j, t in zip(batch, rec.traces):
                j.trace = t
        return list(results)
    except Cancelled as e:
        return [e for _ in batch]
    except W2SError as e:
        if len(batch) == 1:
            return [e]
    except Exception as e:  # noqa: BLE001 - becomes each job's 500, logged by the app
        return [e for _ in batch]
    out: list[Result | BaseException] = []
    for j in batch:
        out += _run_batch([j])
    return out

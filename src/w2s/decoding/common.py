"""Pieces every decoder shares: preparing prompts, the search state, scoring candidates."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

import w2s.decoding.trace as trace
from w2s.decoding.observe import checkpoint
from w2s.errors import W2SError
from w2s.guides import Guide, ScoringSession
from w2s.models.base import (
    Backend,
    Continuation,
    LogitsBackend,
    OverlappingBackend,
    PromptCounter,
    Request,
    SearchBackend,
    TokenScoringBackend,
    TopLogprobsBackend,
)
from w2s.params import SamplingParams
from w2s.result import Candidate, Cost, Result
from w2s.rng import prompt_key, stream_keys


@dataclass
class Prepared:
    """Validated prompts with their random-stream keys."""

    prompts: list[str]
    keys: list[int]
    start: float
    index: list[int] | None = None
    """Each prompt's place in the decoder call (None: the call's own prompts, in order)."""

    def subset(self, idx: Sequence[int]) -> Prepared:
        """The same prompts, restricted to ``idx`` (a batch of the whole call)."""
        return Prepared([self.prompts[i] for i in idx], [self.keys[i] for i in idx], self.start,
                        [self.where(i) for i in idx])

    def where(self, i: int) -> int:
        """Prompt ``i``'s place in the decoder call (what traces and watchers are told)."""
        return i if self.index is None else self.index[i]


def prepare(backend: Backend, prompts: Sequence[str], sampling: SamplingParams) -> Prepared:
    """Validate prompts; the backend refuses, in one line, any it cannot take, before any work."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise W2SError("no prompts given")
    sampling = sampling_of(sampling)
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise W2SError(f"prompts must be strings, got {type(p).__name__}")
        try:
            p.encode("utf-8")
        except UnicodeEncodeError as e:
            raise W2SError(f"prompt {i} is not valid Unicode text ({e.reason} at character "
                           f"{e.start})") from None
    backend.check_prompts(prompts, sampling.max_new_tokens)
    return Prepared(prompts, [prompt_key(sampling.seed, p) for p in prompts], time.perf_counter())


CAPABILITY = {Backend: "sampled continuations", SearchBackend: "per-row search state",
              LogitsBackend: "next-token log-probabilities",
              TopLogprobsBackend: "top-1 token log-probabilities (logprobs=1)",
              TokenScoringBackend: "per-token log-probabilities of given text"}


def sampling_of(sampling: Any) -> SamplingParams:
    """The sampling settings (defaults for None) with a seed: a missing one is drawn fresh
    here, once per call, so the call repeats with the seed its results record in ``params``.
    Anything else is refused in one line."""
    if sampling is None:
        sampling = SamplingParams()
    if not isinstance(sampling, SamplingParams):
        raise W2SError(f"sampling must be a w2s.SamplingParams, got {type(sampling).__name__} "
                       "(e.g. SamplingParams(max_new_tokens=50, seed=0))")
    if sampling.seed is None:
        import dataclasses
        import secrets

        sampling = dataclasses.replace(sampling, seed=secrets.randbits(63))
    return sampling


def knobs(value: Any, cls: type, method: str) -> Any:
    """``value`` if it is ``method``'s knob dataclass (``cls()`` for None), else the one-line
    error that names what was passed where (e.g. SamplingParams in the knobs' place)."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise W2SError(f"{method}: its knobs must be a w2s.{cls.__name__}, got "
                       f"{type(value).__name__} (sampling settings go in sampling=...)")
    return value


def require(backend: object, capability: type, method: str, role: str = "base") -> Any:
    """``backend`` if it implements the ``capability`` protocol, else the one-line error that
    names what ``method`` needs and what this backend is."""
    if isinstance(backend, capability):
        return backend
    what = CAPABILITY.get(capability, capability.__name__)
    if not isinstance(backend, Backend):
        raise W2SError(f"{method}: the {role} must be a w2s backend (e.g. HFModel) with "
                       f"{what}, got {type(backend).__name__}")
    name = backend.name
    if role != "base":
        raise W2SError(f"{method} needs {what} from the {role} model; {name} does not offer "
                       "them")
    text_only = not isinstance(backend, (LogitsBackend, TopLogprobsBackend))
    raise W2SError(f"{method} needs {what}; this backend ({name}) "
                   + ("returns text only" if text_only else "does not offer them"))


@dataclass
class Entry:
    """A partial or complete response under construction; ``row`` is its row in the search
    state that grew it (see :class:`Frontier`)."""

    ids: list[int] | None  # base tokens; None when the backend reports text only
    text: str = ""
    ended: bool = False  # EOS or stop string
    score: float | None = None
    rounds: int = 0  # chunks this response was grown by (CBS's KL bound counts them)
    tokens: int = 0  # base tokens sampled into it
    row: int = field(default=-1, repr=False)
    slot: int = field(default=-1, repr=False)  # the random slot its last chunk was drawn from
    node: int = field(default=-1, repr=False)  # its trace node id (w2s.decoding.trace), if any

    def done(self, max_new_tokens: int) -> bool:
        return self.ended or self.tokens >= max_new_tokens

    def candidate(self) -> Candidate:
        return Candidate(self.text, list(self.ids or []), self.score, self.ended)

    def child(self, c: Continuation, **where: int) -> Entry:
        """This response grown by continuation ``c``: one round more (``where``: its row and
        slot in a :class:`Frontier`)."""
        ids = None if self.ids is None or c.token_ids is None else self.ids + c.token_ids
        return Entry(ids, c.response, c.ended, rounds=self.rounds + 1,
                     tokens=self.tokens + c.n_tokens, **where)


def rank(pool: list[Entry]) -> list[Entry]:
    """Best score first; the sort is stable, so ties keep the pool's order."""
    return sorted(pool, key=lambda e: -e.score)  # type: ignore[operator]


class Frontier:
    """The live candidates of one search, one row each: the single owner of per-row state.

    Row ``j`` of the base's search state (a :class:`SearchBackend`'s KV cache) and of the
    guide's :class:`ScoringSession` is candidate ``entries[j]``; :meth:`grow` reindexes both
    with one list of parent rows, so they cannot drift apart. Rows start as the prompts' empty
    responses. With a search backend no prefix is ever re-encoded (children copy their parent's
    cache row, losers are dropped at the next reindex); any other backend gets
    ``complete(prompt, response so far)``, one request per parent with ``n`` = its children.
    Both paths give the same tokens (tests pin it).
    """

    def __init__(self, backend: Backend, prep: Prepared, sampling: SamplingParams,
                 cost: list[Cost], rows_per_prompt: int, session: ScoringSession | None = None
                 ) -> None:
        self.backend, self.prep, self.sampling, self.cost = backend, prep, sampling, cost
        self.session = session
        self.entries = [Entry([], row=i) for i in range(len(prep.prompts))]
        self.owners = list(range(len(prep.prompts)))  # row -> prompt index
        self.state = (backend.open_search(prep.prompts, sampling.max_new_tokens, rows_per_prompt)
                      if isinstance(backend, SearchBackend) else None)
        if self.state is not None:  # each prompt is read once; its KV cache keeps the rest
            for c, p in zip(cost, prep.prompts):
                c.base_read += read_tokens(backend, p)

    def _row(self, e: Entry) -> int:
        if not (0 <= e.row < len(self.entries) and self.entries[e.row] is e):
            raise RuntimeError("internal: a parent that is not a live row of this search")
        return e.row

    def grow(self, rows: list[tuple[int, Entry, int]], max_tokens: int) -> list[Entry]:
        """Sample up to ``max_tokens`` new tokens for each (prompt index, parent, slot) row;
        the children become the rows (child ``j`` is row ``j``)."""
        if not rows:
            return []
        checkpoint()  # a server stops here the work of clients that went away
        parents = [self._row(e) for _, e, _ in rows]
        keys = torch.tensor([self.prep.keys[i] for i, _, _ in rows], dtype=torch.long)
        slots = torch.tensor([s for _, _, s in rows], dtype=torch.long)
        streams = stream_keys(keys, slots)
        if self.state is not None:
            b = self.backend
            assert isinstance(b, SearchBackend)
            self.state = b.reindex(self.state, parents, max_tokens + 1)  # (+ a pending token)
            conts, self.state = b.sample_chunk(self.state, [e.ids or [] for _, e, _ in rows],
                                               streams, max_tokens, self.sampling)
            if len(conts) != len(rows):
                raise W2SError(f"backend {b.name!r} returned {len(conts)} continuations for "
                               f"{len(rows)} rows")
        else:
            conts = self._complete(rows, streams.tolist(), max_tokens)
        if self.session is not None:
            self.session.reindex(parents)
        children = []
        for j, ((i, parent, slot), c) in enumerate(zip(rows, conts)):
            self.cost[i].base_tokens += c.n_tokens
            children.append(parent.child(c, row=j, slot=slot))
        self.entries = children
        self.owners = [i for i, _, _ in rows]
        if self.session is not None and trace.on():  # a search (sampling has no session)
            for (i, parent, _), child in zip(rows, children):
                trace.node(self.prep.where(i), parent, child)
        return children

    def _complete(self, rows: list[tuple[int, Entry, int]], streams: list[int],
                  max_tokens: int) -> list[Continuation]:
        """The stateless path: consecutive rows of one parent are one request with ``n``."""
        reqs: list[Request] = []
        j = 0
        while j < len(rows):
            i, parent, _ = rows[j]
            n = 1
            while j + n < len(rows) and rows[j + n][1] is parent:
                n += 1
            reqs.append(Request(self.prep.prompts[i], parent.text,
                                None if parent.ids is None else tuple(parent.ids),
                                tuple(streams[j: j + n]), parent.tokens))
            self.cost[i].base_read += read_tokens(self.backend, self.prep.prompts[i],
                                                  parent.tokens)
            j += n
        out = complete_checked(self.backend, reqs, max_tokens, self.sampling)
        return [c for o in out for c in o]

    def score(self) -> None:
        """Score every row (its whole response so far) through the session."""
        assert self.session is not None
        score_entries(self.session.guide, self.prep, self.owners, self.entries, self.cost,
                      self.session)


def complete_checked(backend: Backend, reqs: Sequence[Request], max_tokens: int,
                     sampling: SamplingParams) -> list[list[Continuation]]:
    """``backend.complete``, refused in one line when a request does not get exactly one
    continuation per random stream (a misbehaving engine would otherwise shift every
    answer onto another prompt)."""
    out = backend.complete(list(reqs), max_tokens, sampling)
    if [len(o) for o in out] != [len(r.streams) for r in reqs]:
        raise W2SError(f"backend {backend.name!r} returned the wrong number of continuations")
    return out


def complete_by_room(backend: Backend, reqs: Sequence[Request], rooms: Sequence[int],
                     sampling: SamplingParams) -> list[list[Continuation]]:
    """:func:`complete_checked` for requests that may each sample a different number of
    tokens (``rooms``: prefixes of different lengths all end at max_new_tokens): one call per
    distinct room, the answers back in the requests' order."""
    out: list[list[Continuation]] = [[] for _ in reqs]
    for m in sorted(set(rooms)):
        part = [k for k, r in enumerate(rooms) if r == m]
        for k, conts in zip(part, complete_checked(backend, [reqs[k] for k in part], m,
                                                   sampling)):
            out[k] = conts
    return out


def prompt_groups(backend: Backend, n_prompts: int, rows_per_prompt: int) -> list[range]:
    """Split prompts so one group holds at most ``backend.batch_size`` rows (at least 1
    prompt); a backend that overlaps ``k`` groups gets at least ``k`` groups when there are
    enough prompts."""
    cap = max(1, backend.batch_size // max(1, rows_per_prompt))
    ways = backend.overlap if isinstance(backend, OverlappingBackend) else 1
    if ways > 1 and n_prompts > 1:
        cap = min(cap, -(-n_prompts // ways))
    return [range(lo, min(lo + cap, n_prompts)) for lo in range(0, n_prompts, cap)]


_GUIDE_LOCK: contextvars.ContextVar[threading.Lock | None] = contextvars.ContextVar(
    "w2s_guide_lock", default=None)
"""Held around each scoring call while groups of prompts overlap: the guide's models and
tokenizers then serve one group at a time, and only the waiting on the engine overlaps."""


def run_groups(backend: Backend, groups: list[range], fn: Callable[[range], list[Any]]
               ) -> list[Any]:
    """``fn`` on every group, concatenated in order: one after another, or, for an
    :class:`OverlappingBackend`, ``overlap`` at a time in threads (each in a copy of the
    caller's context, so cancellation and progress watchers still see it) that take turns
    at the guide."""
    ways = backend.overlap if isinstance(backend, OverlappingBackend) else 1
    if ways <= 1 or len(groups) <= 1:
        return [x for g in groups for x in fn(g)]
    lock = threading.Lock()

    def one(g: range) -> list[Any]:
        _GUIDE_LOCK.set(lock)
        return fn(g)

    with ThreadPoolExecutor(min(ways, len(groups)), thread_name_prefix="w2s-group") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, g) for g in groups]
        return [x for f in futures for x in f.result()]


def score_entries(guide: Guide, prep: Prepared, owners: list[int], entries: list[Entry],
                  cost: list[Cost], session: ScoringSession | None = None) -> None:
    """Score each entry (whole response so far) with the guide, in one batch.

    With a ``session`` (search), ``entries`` are its rows, scored incrementally.
    """
    if not entries:
        return
    texts, ended = [e.text for e in entries], [e.ended for e in entries]
    with _GUIDE_LOCK.get() or contextlib.nullcontext():  # overlapping groups take turns here
        if session is not None:
            values, tokens = session.score(texts, ended)
        else:
            values, tokens = guide.score_with_cost([prep.prompts[i] for i in owners], texts,
                                                   ended)
    for e, v in zip(entries, values.tolist()):
        e.score = float(v)
    if trace.on():
        trace.flush()  # a traced round's nodes go out with their scores
    # attribute guide tokens to prompts in proportion to their entries (exact for one prompt)
    per_prompt: dict[int, int] = {}
    for i in owners:
        per_prompt[i] = per_prompt.get(i, 0) + 1
    for i, n in per_prompt.items():
        cost[i].guide_tokens += round(tokens * n / len(entries))


def read_tokens(backend: Backend, prompt: str, response_tokens: int = 0) -> int:
    """Tokens the base reads (without sampling them) to continue ``prompt`` plus a response of
    ``response_tokens``: the prompt as it counts it (0 if it cannot tell) and the response."""
    n = backend.prompt_tokens(prompt) if isinstance(backend, PromptCounter) else None
    return (n or 0) + response_tokens


def finish_costs(prep: Prepared, cost: list[Cost]) -> list[Cost]:
    wall = time.perf_counter() - prep.start
    for c in cost:
        c.wall_time_s, c.batch_prompts = wall, len(cost)
    return cost


def small_writer(guide: Guide | None, method: str) -> Any:
    """The small tuned model of a tuned/untuned pair guide, for the methods that let it write
    part of the answer (Nudging, WSD)."""
    writer = guide.writer() if isinstance(guide, Guide) else None
    if writer is None:
        raise W2SError(f"{method} needs the small tuned model: a tuned/untuned pair as its "
                       "guide")
    return writer


def writer_streams(prep: Prepared) -> tuple[list[int], list[int]]:
    """Each prompt's random stream for the base (slot 0) and for a small writer (slot 1)."""
    keys = torch.tensor(prep.keys, dtype=torch.long)
    return (stream_keys(keys, torch.zeros_like(keys)).tolist(),
            stream_keys(keys, torch.ones_like(keys)).tolist())


def answer_results(method: str, guide: Guide | None, prep: Prepared, entries: list[Entry],
                   cost: list[Cost], knobs: dict[str, Any], sampling: SamplingParams
                   ) -> list[Result]:
    """One Result per prompt for methods that write one answer each outside a search (token
    level, Nudging, WSD): the guide, when given, scores the answers for the report (that
    scoring is no part of the method's cost), and the costs get the call's wall time."""
    if guide is not None:
        score_entries(guide, prep, list(range(len(entries))), entries,
                      [Cost() for _ in entries])
    cost = finish_costs(prep, cost)
    params = {"method": method, **knobs, **sampling.to_dict()}
    return [Result.from_candidates(p, method, [e.candidate()], c, params)
            for p, e, c in zip(prep.prompts, entries, cost)]


def require_guide(guide: Guide | None, method: str) -> Guide:
    if guide is None:
        raise W2SError(f"{method} needs a guide (a tuned/untuned pair or a reward model)")
    if not isinstance(guide, Guide):
        raise W2SError(f"{method}: guide must be a w2s Guide, got {type(guide).__name__}")
    return guide


GroupSearch = Callable[[Backend, Guide, Prepared, Any, SamplingParams, list[Cost], list[int]],
                       list[tuple[list[Entry], dict[str, float]]]]
"""``search(backend, guide, prep, knobs, sampling, cost, index)``: one group of prompts (their
places in the call: ``index``) -> per prompt, its candidates ranked and its stats."""


def run_search(method: str, backend: Backend, guide: Guide | None, prompts: Sequence[str],
               knob: Any, knob_cls: type, sampling: SamplingParams | None, return_all: bool,
               rows: Callable[[Any], int], search: GroupSearch) -> list[Result]:
    """The frame every guided search shares: check the knobs, the sampling settings, the
    guide and the base; run ``search`` on groups of prompts that fit one batch
    (``rows(knobs)`` candidate rows each); one ranked :class:`Result` per prompt (every final
    candidate with ``return_all``), with the stats ``search`` gives."""
    knob = knobs(knob, knob_cls, method)
    sampling = sampling_of(sampling)
    guide = require_guide(guide, method)
    backend = require(backend, Backend, method)
    prep = prepare(backend, prompts, sampling)
    cost = [Cost() for _ in prep.prompts]

    def work() -> list[Result]:
        out: list[tuple[list[Entry], dict[str, float]]] = run_groups(
            backend, prompt_groups(backend, len(prep.prompts), rows(knob)),
            lambda group: search(backend, guide, prep.subset(group), knob, sampling,
                                 [cost[i] for i in group], list(group)))
        return _results(method, prep, knob, sampling, out, cost, return_all)

    return trace.traced(work)  # a direct call is traced too (DecoderSpec.run nests it)


def _results(method: str, prep: Prepared, knob: Any, sampling: SamplingParams,
             out: list[tuple[list[Entry], dict[str, float]]], cost: list[Cost],
             return_all: bool) -> list[Result]:
    """One ranked Result per prompt; a trace marks what each returns as kept."""
    cost = finish_costs(prep, cost)
    params = {"method": method, **knob.to_dict(), **sampling.to_dict()}
    results = []
    for j, (p, (pool, stats), c) in enumerate(zip(prep.prompts, out, cost)):
        if trace.on():
            trace.answer(j, pool if return_all else pool[:1])
        r = Result.from_candidates(p, method, [e.candidate() for e in (
            pool if return_all else pool[:1])], c, params)
        r.stats = stats
        results.append(r)
    return results

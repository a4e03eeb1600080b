"""Search traces: what a search did on each prompt, as a tree of the candidates it scored.

A trace answers "why this answer?": every candidate a search grew is a *node* (its parent, the
round that made it, the text it added, the guide's score, whether it ended) and the nodes the
search *kept* (grew further, or returned) are marked. Like :mod:`~w2s.decoding.observe`, it is
free when nobody records: decoders check :func:`on` (one :class:`~contextvars.ContextVar`
read) and do nothing else while it is False (the default).

The recorder API a decoder uses (searches over :class:`~w2s.decoding.common.Frontier` get it
for free; a decoder with its own loop, such as MCTS, calls it itself):

- :func:`on` -- whether anyone records (skip all tracing work when False);
- :func:`node` ``(index, parent, child)`` -- ``child`` (an Entry) was grown from ``parent``
  (the prompt's empty response for the first round) for prompt ``index`` of the decoder call;
  ``parent`` is marked kept. Its score and ``ended`` are read when the round is flushed;
- :func:`flush` -- a round is scored: its new nodes go out (to a live listener such as the
  server's stream) with their scores;
- :func:`answer` ``(index, entries)`` -- the entries the call returns for prompt ``index``,
  best first: they are kept, and the first is the answer.

:class:`~w2s.decoding.registry.DecoderSpec.run` opens and closes each call, so every trace
names its method and knobs; a decoder that records no node (sampling, token-level methods)
gets a one-node trace, root -> its answer, with ``"rounds": false``.

The record, one JSON object per prompt (the ``--trace`` file holds one a line)::

    {"prompt": "...", "method": "cbs", "params": {...}, "rounds": true, "answer": 7,
     "nodes": [{"id": 1, "parent": 0, "round": 1, "delta": " good", "score": 1.5,
                "tokens": 2, "ended": false, "kept": true}, ...]}

Node ids start at 1 in creation order; parent 0 is the root (the empty response), which is
not listed. ``delta`` is the text the node added to its parent's (``back``, rarely present,
counts characters of the parent's text a detokenizer took back first); ``tokens`` counts the
response's base tokens so far; ``round`` is its depth (the number of chunks in it).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from w2s.errors import W2SError

Listener = Callable[[int, list[dict[str, Any]], list[int]], None]
"""``listener(index, new_nodes, newly_kept_ids)``: called as a round of prompt ``index`` is
flushed (from the decoding thread)."""

T = TypeVar("T")

NO_ROUNDS = ("this method has no search rounds: the trace is its answer alone, one node")


class _Tree:
    """One prompt's nodes while its call runs (entries are held until they are flushed)."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.pending: list[tuple[dict[str, Any], Any]] = []  # (node, its Entry)
        self.new_kept: list[int] = []
        self.answer = 0


class Recorder:
    """Collects the trace of every prompt of every decoder call made while it is set
    (:func:`recording`): ``traces``, one record per prompt, in call order."""

    def __init__(self, listener: Listener | None = None) -> None:
        self.traces: list[dict[str, Any]] = []
        self.listener = listener
        self.trees: dict[int, _Tree] = {}
        self.depth = 0
        self.lock = threading.Lock()  # groups of prompts may run in threads

    def tree(self, index: int) -> _Tree:
        t = self.trees.get(index)
        if t is None:
            t = self.trees[index] = _Tree()
        return t


_RECORDER: ContextVar[Recorder | None] = ContextVar("w2s_trace", default=None)


@contextlib.contextmanager
def tracing(listener: Listener | None = None) -> Iterator[Recorder]:
    """Record the traces of the decoder calls made in this block (this thread and the
    groups it starts) into the recorder's ``traces``, one JSON-ready record per prompt (see
    docs/traces.md); ``listener(index, nodes, kept)`` sees each round's new nodes as they
    are scored. Outside such a block decoders record nothing and pay nothing::

        with w2s.tracing() as rec:
            results = w2s.cbs(base, guide, prompts, w2s.SearchParams(w=2, k=2, l=4))
        rec.traces[0]["nodes"]
    """
    rec = Recorder(listener)
    token = _RECORDER.set(rec)
    try:
        yield rec
    finally:
        _RECORDER.reset(token)


recording = tracing
"""The name the faces use (``trace.recording()``)."""


def on() -> bool:
    """Whether anyone records (decoders skip every other call of this module otherwise)."""
    return _RECORDER.get() is not None


def _kept(tree: _Tree, node_id: int) -> None:
    if node_id > 0:
        n = tree.nodes[node_id - 1]
        if not n["kept"]:
            n["kept"] = True
            tree.new_kept.append(node_id)


def node(index: int, parent: Any, child: Any) -> None:
    """Record ``child`` (an Entry) grown from ``parent`` for prompt ``index`` of the call;
    the child's ``node`` becomes its id. Parents become kept."""
    rec = _RECORDER.get()
    if rec is None:
        return
    with rec.lock:
        tree = rec.tree(index)
        pid = max(parent.node, 0)
        _kept(tree, pid)
        ptext, text = parent.text, child.text
        n: dict[str, Any] = {"id": len(tree.nodes) + 1, "parent": pid, "round": child.rounds}
        if text.startswith(ptext):
            n["delta"] = text[len(ptext):]
        else:  # a detokenizer changed the parent's tail: say how much to take back
            keep = len(_common(ptext, text))
            n["back"], n["delta"] = len(ptext) - keep, text[keep:]
        n.update(score=None, tokens=child.tokens, ended=bool(child.ended), kept=False)
        tree.nodes.append(n)
        tree.pending.append((n, child))
        child.node = n["id"]


def _score(v: Any) -> float | None:
    """A score as JSON keeps it: rounded, None when missing or not finite."""
    return round(float(v), 6) if v is not None and math.isfinite(float(v)) else None


def _common(a: str, b: str) -> str:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]


def flush() -> None:
    """The pending nodes take their entries' scores; a listener gets each prompt's news."""
    rec = _RECORDER.get()
    if rec is None:
        return
    news = []
    with rec.lock:
        for index, tree in rec.trees.items():
            if not tree.pending and not tree.new_kept:
                continue
            new = []
            for n, e in tree.pending:
                n["score"] = _score(e.score)
                n["ended"] = bool(e.ended)
                new.append(dict(n))
            news.append((index, new, tree.new_kept))
            tree.pending, tree.new_kept = [], []
    if rec.listener is not None:
        for index, new, kept in news:
            rec.listener(index, new, kept)


def answer(index: int, entries: Sequence[Any]) -> None:
    """The entries prompt ``index`` returns, best first: kept; the first is the answer."""
    rec = _RECORDER.get()
    if rec is None:
        return
    with rec.lock:
        tree = rec.tree(index)
        for e in entries:
            _kept(tree, max(e.node, 0))
        if entries:
            tree.answer = max(entries[0].node, 0)


def begin() -> None:
    """A decoder call starts (:meth:`DecoderSpec.run`): its prompts' trees start empty."""
    rec = _RECORDER.get()
    if rec is not None:
        rec.depth += 1
        if rec.depth == 1:
            rec.trees = {}


def end(results: Sequence[Any] | None) -> None:
    """A decoder call ends: one record per result joins ``traces`` (None: it failed)."""
    rec = _RECORDER.get()
    if rec is None:
        return
    rec.depth -= 1
    if rec.depth > 0:
        return
    if results is None:
        rec.trees = {}
        return
    flush()
    for i, r in enumerate(results):
        rec.traces.append(record(r, rec.trees.get(i)))
        if i not in rec.trees and rec.listener is not None:
            rec.listener(i, rec.traces[-1]["nodes"], [1])
    rec.trees = {}


def traced(call: Callable[[], T]) -> T:
    """``call()`` as one traced decoder call (:func:`begin`, then :func:`end` with its
    results, or with None when it raised): what :meth:`DecoderSpec.run` and every search's
    frame wrap their work in."""
    begin()
    results = None
    try:
        results = call()
    finally:
        end(results)  # type: ignore[arg-type]
    return results


def record(result: Any, tree: _Tree | None) -> dict[str, Any]:
    """The JSON record of one prompt: its tree, or one node (root -> the answer) when the
    method recorded none."""
    out: dict[str, Any] = {"prompt": str(result.prompt), "method": result.method,
                           "params": dict(result.params)}
    if tree is not None and tree.nodes:
        out.update(rounds=True, answer=tree.answer, nodes=tree.nodes)
        return out
    cost = getattr(result, "cost", None)
    out.update(rounds=False, note=NO_ROUNDS, answer=1,
               nodes=[{"id": 1, "parent": 0, "round": 1, "delta": result.text,
                       "score": _score(result.score), "tokens": len(result.token_ids) or
                       (cost.base_tokens if cost is not None else 0),
                       "ended": bool(result.finished), "kept": True}])
    return out


def path_text(trace: dict[str, Any], node_id: int) -> str:
    """The response at ``node_id``: the deltas from the root down to it."""
    by_id = {n["id"]: n for n in trace["nodes"]}
    chain = []
    while node_id:
        n = by_id[node_id]
        chain.append(n)
        node_id = n["parent"]
    text = ""
    for n in reversed(chain):
        text = text[:len(text) - n.get("back", 0)] + n["delta"]
    return text


def check_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if a trace file can be written there (it is opened, so a read-only place is
    found now), else one line saying why: called before any model loads."""
    p = Path(path)
    if p.is_dir():
        raise W2SError(f"trace file {p} is a folder; name a file (e.g. {p / 'trace.jsonl'})")
    if not p.parent.is_dir():
        raise W2SError(f"trace file {p}: its folder {p.parent} does not exist")
    try:
        with open(p, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise W2SError(f"trace file {p} cannot be written ({e.strerror})") from None
    return p


def write(path: str | os.PathLike[str], traces: Sequence[dict[str, Any]]) -> None:
    """``traces`` as JSON Lines, one prompt's record a line (the file is replaced)."""
    with open(path, "w", encoding="utf-8") as f:
        for t in traces:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")

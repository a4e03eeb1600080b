"""Monte Carlo tree search over chunks of base tokens, valued by the weak guide.

After W2S-AlignTree (AAAI 2026): a tree whose actions are chunks the base samples, searched
with PUCT (as AlphaZero) and valued by the weak-to-strong guide, under a budget of base
tokens. Knobs (expansions, k, l, c, prior):

    root <- the empty response
    repeat `expansions` times (every prompt of the batch in lock-step):
        select: from the root, while the node is expanded and not finished, go to the child
            maximising  Q(a) + c * P(a) * sqrt(N(s)) / (1 + N(a)),
            P(a) = softmax over siblings of prior * log p_base(a) / |a|
        expand: sample k chunks of l base tokens from the node (fresh random slots); each
            child's value is the guide's score of its response per base token
        backup: every node on the path gets the new children's mean value: N += 1,
            W += value, Q = W / N   (a finished node is re-valued instead of expanded)
    answer: the most visited path, completed by plain sampling if it ends unfinished, and
        every finished response of the tree, ranked by the guide's score of the whole response

P(a) is the policy prior of PUCT, as the policy network's in AlphaZero: the base's
log-probability of the chunk (before temperature), per token so that chunks cut short by EOS
compare with whole ones, sharpened or flattened by ``prior`` (0: uniform, which trusts that
sampling already put the likely chunks there). In-process backends report the log-probability,
engines with ``logprobs=0`` too. Values are per base token so that nodes at different depths
compare. Each expansion samples at most k * l tokens, and the completion at
most max_new_tokens: the base tokens are at most expansions * k * l + max_new_tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

import w2s.decoding.trace as trace
from w2s.decoding.common import (
    Entry,
    Prepared,
    complete_by_room,
    rank,
    read_tokens,
    run_search,
    score_entries,
)
from w2s.decoding.observe import checkpoint
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.models.base import Backend, Request
from w2s.params import MCTSParams, SamplingParams
from w2s.result import Cost, Result
from w2s.rng import stream_keys


@dataclass
class Node:
    """A response in the tree: its entry, children, visit count N and total value W."""

    entry: Entry
    parent: Node | None = None
    logp: float = 0.0  # the base's log-probability per token of the chunk that made it
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    total: float = 0.0

    @property
    def q(self) -> float:
        return self.total / self.visits if self.visits else 0.0


def priors(node: Node, weight: float) -> list[float]:
    """P(a) of each child: softmax over the siblings of ``weight * logp``; uniform at 0."""
    z = [weight * ch.logp for ch in node.children]
    top = max(z)
    e = [math.exp(x - top) for x in z]
    return [x / sum(e) for x in e]


def puct(node: Node, c: float, weight: float = 0.0) -> Node:
    """The child maximising Q(a) + c P(a) sqrt(N(s)) / (1 + N(a)) (the first on ties)."""
    n = math.sqrt(sum(ch.visits for ch in node.children))
    score = [ch.q + c * p * n / (1 + ch.visits)
             for ch, p in zip(node.children, priors(node, weight))]
    return node.children[score.index(max(score))]


def select(root: Node, c: float, max_new: int, weight: float = 0.0) -> Node:
    """Descend by PUCT to a node that is not expanded, or finished."""
    node = root
    while node.children and not node.entry.done(max_new):
        node = puct(node, c, weight)
    return node


def backup(node: Node | None, value: float) -> None:
    """Add one visit of ``value`` to ``node`` and every node above it."""
    while node is not None:
        node.visits += 1
        node.total += value
        node = node.parent


def value(e: Entry) -> float:
    """A response's value: the guide's score per base token."""
    return float(e.score or 0.0) / max(1, e.tokens)


def mcts(backend: Backend, guide: Guide | None, prompts: Sequence[str],
         knob: MCTSParams | None = None, sampling: SamplingParams | None = None, *,
         return_all: bool = False) -> list[Result]:
    """Monte Carlo tree search over base chunks; the guide values the nodes."""
    return run_search("mcts", backend, guide, prompts, knob, MCTSParams, sampling, return_all,
                      lambda k: k.k, _search)


def _search(backend: Backend, guide: Guide, prep: Prepared, knob: MCTSParams,
            sampling: SamplingParams, cost: list[Cost], index: list[int]
            ) -> list[tuple[list[Entry], dict[str, float]]]:
    """One group of prompts, searched in lock-step: each prompt's answers ranked, and its
    tree's size."""
    roots = [Node(Entry([])) for _ in prep.prompts]
    fresh = [0] * len(prep.prompts)  # each prompt's next unused random slot
    max_new = sampling.max_new_tokens
    for _ in range(knob.expansions):
        checkpoint()
        leaves = [select(r, knob.c, max_new, knob.prior) for r in roots]
        grow = [i for i, leaf in enumerate(leaves) if not leaf.entry.done(max_new)]
        kids = _expand(backend, guide, prep, sampling, cost, fresh, leaves, grow, knob)
        for i, leaf in enumerate(leaves):
            new = kids.get(i, [])
            leaf.children += new
            for ch in new:
                backup(ch, value(ch.entry))
            if not new:  # finished: valued again, as AlphaZero does at a terminal state
                backup(leaf, value(leaf.entry))
    return [(_answer(backend, guide, prep, sampling, cost, fresh, i, root, knob),
             {"nodes": float(_size(root)), "root_visits": float(root.visits)})
            for i, root in enumerate(roots)]


def _size(node: Node) -> int:
    return 1 + sum(_size(ch) for ch in node.children)


def _expand(backend: Backend, guide: Guide, prep: Prepared, sampling: SamplingParams,
            cost: list[Cost], fresh: list[int], leaves: list[Node], grow: list[int],
            knob: MCTSParams, n: int | None = None, tokens: int | None = None
            ) -> dict[int, list[Node]]:
    """Sample ``n`` (default k) chunks of ``tokens`` (default l) from the leaf of each prompt
    in ``grow`` (one request each, fresh slots), score the children; returns them by prompt."""
    if not grow:
        return {}
    n = knob.k if n is None else n
    reqs, owners = [], []
    for i in grow:
        e = leaves[i].entry
        slots = torch.arange(fresh[i], fresh[i] + n, dtype=torch.long)
        fresh[i] += n
        keys = torch.full((n,), prep.keys[i], dtype=torch.long)
        reqs.append(Request(prep.prompts[i], e.text, None if e.ids is None else tuple(e.ids),
                            tuple(stream_keys(keys, slots).tolist()), e.tokens))
        cost[i].base_read += read_tokens(backend, prep.prompts[i], e.tokens)
        owners.append(i)
    length = tokens if tokens is not None else knob.l
    # each leaf's chunk ends at max_new_tokens: one call per chunk length (leaves of prompts
    # at other depths can have less room left)
    room = [min(length, sampling.max_new_tokens - leaves[i].entry.tokens) for i in owners]
    out = complete_by_room(backend, reqs, room, sampling)
    kids: dict[int, list[Node]] = {}
    entries, who = [], []
    for i, conts in zip(owners, out):
        parent = leaves[i]
        for c in conts:
            cost[i].base_tokens += c.n_tokens
            e = parent.entry.child(c)
            if knob.prior and c.logprob is None:
                raise W2SError(f"mcts: prior={knob.prior:g} needs the base's log-probabilities "
                               f"of its chunks and {backend.name} does not report them; set "
                               "prior to 0 (a uniform prior)")
            logp = (c.logprob or 0.0) / max(1, c.n_tokens)
            kids.setdefault(i, []).append(Node(e, parent, logp=logp))
            if trace.on():  # MCTS grows its own tree: it records its nodes itself
                trace.node(prep.where(i), parent.entry, e)
            entries.append(e)
            who.append(i)
    score_entries(guide, prep, who, entries, cost)
    return kids


def _answer(backend: Backend, guide: Guide, prep: Prepared, sampling: SamplingParams,
            cost: list[Cost], fresh: list[int], i: int, root: Node, knob: MCTSParams
            ) -> list[Entry]:
    """The finished responses of the tree and the most visited path (completed by plain
    sampling when it ends unfinished), ranked by the guide's score of the whole response."""
    max_new = sampling.max_new_tokens
    done, stack = [], [root]
    while stack:
        node = stack.pop()
        stack += node.children
        if node is not root and node.entry.done(max_new):
            done.append(node.entry)
    node = root
    while node.children:  # the most visited path (first on ties)
        node = max(node.children, key=lambda ch: ch.visits)
    if not node.entry.done(max_new):
        leaves = [node if j == i else root for j in range(len(prep.prompts))]
        kids = _expand(backend, guide, prep, sampling, cost, fresh, leaves, [i], knob, n=1,
                       tokens=max_new)
        done.append(kids[i][0].entry)
    return rank(done)


def mcts_at_budget(knob: MCTSParams, b: int, max_new: int) -> MCTSParams:
    """As many expansions of k * l tokens as fit in b responses' tokens, one response kept
    for completing the most visited path."""
    expansions = (b - 1) * max_new // (knob.k * knob.l)
    if expansions < 1:
        raise W2SError(f"mcts: one expansion (k*l = {knob.k * knob.l} tokens) and a completion "
                       f"({max_new}) do not fit a budget of {b} responses of {max_new} tokens; "
                       "lower k or l, or raise the budget")
    return dataclasses.replace(knob, expansions=expansions)

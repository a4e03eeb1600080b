"""QAlign / QUEST: Metropolis-Hastings over whole responses, targeting the aligned model.

Faria & Smith, "Sample, Don't Search: Rethinking Test-Time Alignment for Language Models"
(2025, arXiv 2504.03790; QAlign), built on QUEST ("Quality-Aware Metropolis-Hastings
Sampling for Machine Translation", 2024, arXiv 2406.00049; code: deep-spin/quest-decoding).
Instead of searching for the response the guide likes best, each chain *samples* from the
KL-regularised aligned target

    pi(y)  proportional to  pi_base(y | x) * exp(r(x, y) / beta),

so more compute buys a better sample of pi, not a harder optimisation of a weak guide's
errors. r is the guide's score of the whole response (the weak-to-strong pair's
log pi_tuned - log pi_untuned, or a reward model). Knobs (steps, chains, beta):

    every chain starts from a full base sample (chain c: slot c, as Best-of-N's sample c)
    repeat `steps` times, every chain of every prompt in lock-step:
        y = the chain's response, |y| its base tokens (EOS included when the base counts it)
        cut i uniform in {0, ..., |y| - 1}; keep y[:i]; resample the suffix from the base
            given prompt + y[:i] (up to max_new_tokens - i tokens): the proposal y'
        accept y' with probability  min(1, exp((r(y') - r(y)) / beta) * |y| / |y'|)
    answer: every chain's last state, ranked by the guide's score (best first)

Why that acceptance: the proposal draws (i, y') with probability (1/|y|) pi_base(y'[i:] | y[:i])
and the reverse move draws (i, y) with (1/|y'|) pi_base(y[i:] | y[:i]). pi_base(y) =
pi_base(y[:i]) pi_base(y[i:] | y[:i]), so the base's terms cancel in the Metropolis-Hastings
ratio and what is left is the reward ratio and the index proposal's 1/|y'| over 1/|y|. This is
QUEST's ``RLHFSuffixProposal`` with its ``Uniform`` index (``randint(0, |y|)``, log-probability
-log |y|) exactly; tests/test_qalign.py checks the chain's distribution against the enumerated
target. QUEST clamps the log-ratio to +-20; here it is not clamped (min(1, .) needs no clamp
above, and below it only changes acceptances of probability < 2e-9).

Randomness is counter-based like every search's: chain c's cut and acceptance uniforms come
from its own slot ``CHAIN_SLOT - c`` (positions 2 * step and 2 * step + 1), and its proposal
at step s samples from slot ``chains * (s + 1) + c``, so chains differ and a run repeats.
Proposals are continuations of arbitrary prefixes, so they go through ``backend.complete``
(the stateless path every backend has, an engine's included), as MCTS's expansions do.
Cutting needs the response's token ids and the base's ``decode`` (for the prefix's text: an
engine's tokenizer, ``OpenAIBackend(tokenizer=...)``, with vLLM's token ids); a base that
reports text only, or cannot decode, is refused in one line.

Traced (:mod:`w2s.decoding.trace`), each chain's start is a child of the root and each
proposal a child of the state it was cut from (``back``/``delta`` give its text); a state
that was proposed from, or returned, is kept, so the kept nodes are the chains' accepted
moves.

Cost: each step samples at most max_new_tokens per chain, so base tokens are at most
chains * (steps + 1) * max_new_tokens (:func:`qalign_at_budget` keeps that within a budget).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

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
from w2s.params import QAlignParams, SamplingParams
from w2s.result import Cost, Result
from w2s.rng import stream_keys, uniforms

CHAIN_SLOT = -2
"""Chain c's cut and acceptance uniforms come from slot ``CHAIN_SLOT - c`` (particle
filtering's resampling uses -1)."""

Ask = tuple[int, Entry, tuple[int, ...]]
"""(prompt index, prefix to continue, random slots: one continuation each)."""


def qalign(backend: Backend, guide: Guide | None, prompts: Sequence[str],
           knob: QAlignParams | None = None, sampling: SamplingParams | None = None, *,
           return_all: bool = False) -> list[Result]:
    """Metropolis-Hastings chains over base responses targeting pi_base * exp(r / beta)."""
    return run_search("qalign", backend, guide, prompts, knob, QAlignParams, sampling,
                      return_all, lambda k: k.chains, _chains)


def acceptance(r_old: float, r_new: float, n_old: int, n_new: int, beta: float) -> float:
    """min(1, exp((r' - r) / beta) * |y| / |y'|): the Metropolis-Hastings acceptance of a
    suffix proposal from a uniform cut (lengths of at least 1 token)."""
    log_a = (r_new - r_old) / beta + math.log(max(1, n_old)) - math.log(max(1, n_new))
    return 1.0 if log_a >= 0 else math.exp(log_a)


def cut_index(u: float, n: int) -> int:
    """The cut i = floor(u * n), uniform in {0, ..., n - 1} for u uniform in [0, 1)."""
    n = max(1, n)
    return min(int(u * n), n - 1)


def _decoder(backend: Backend) -> Callable[[Sequence[int]], str]:
    """The text of a cut response's kept tokens: the base's ``decode`` (in process), else its
    tokenizer's (an engine given ``tokenizer``; the engine's text of those tokens is its
    detokenization by the same tokenizer)."""
    decode = getattr(backend, "decode", None)
    if callable(decode):
        return decode
    tok = getattr(backend, "tokenizer", None)
    if callable(getattr(tok, "decode", None)):
        return lambda ids: tok.decode(list(ids), skip_special_tokens=True)  # type: ignore[union-attr]
    raise W2SError(f"qalign cuts responses at a token and needs the base to decode token ids; "
                   f"this backend ({backend.name}) does not (an engine: give it a tokenizer)")


def _chains(backend: Backend, guide: Guide, prep: Prepared, knob: QAlignParams,
            sampling: SamplingParams, cost: list[Cost], index: list[int]
            ) -> list[tuple[list[Entry], dict[str, float]]]:
    """One group of prompts, every chain stepped in lock-step: each prompt's chains' final
    states ranked, and the fraction of proposals accepted."""
    decode, c, n_prompts = _decoder(backend), knob.chains, len(prep.prompts)
    roots = [(i, Entry([]), tuple(range(c))) for i in range(n_prompts)]
    first = _sample(backend, prep, sampling, cost, roots)
    if trace.on():  # a chain's start grows from the root
        for k, e in enumerate(first):
            trace.node(prep.where(k // c), roots[k // c][1], e)
    score_entries(guide, prep, [i for i in range(n_prompts) for _ in range(c)], first, cost)
    states = [first[i * c:(i + 1) * c] for i in range(n_prompts)]
    accepted = [0] * n_prompts
    for step in range(knob.steps):
        checkpoint()
        u = _uniforms(prep, c, step)  # (prompts, chains, 2): cut, accept
        asks: list[Ask] = []
        for i, chain in enumerate(states):
            for j, y in enumerate(chain):
                if y.ids is None:
                    raise W2SError(f"qalign cuts responses at a token and needs their token "
                                   f"ids; this backend ({backend.name}) reports text only")
                k = cut_index(float(u[i, j, 0]), len(y.ids))
                prefix = Entry(y.ids[:k], decode(y.ids[:k]) if k else "", tokens=k)
                asks.append((i, prefix, (c * (step + 1) + j,)))
        props = _sample(backend, prep, sampling, cost, asks)
        for y2 in props:
            y2.rounds = step + 2  # a trace's round: the start is 1, step s's proposal s + 2
        if trace.on():  # a proposal is the child of the state it was cut from
            for (i, _, (slot,)), y2 in zip(asks, props):
                trace.node(prep.where(i), states[i][slot - c * (step + 1)], y2)
        score_entries(guide, prep, [i for i, _, _ in asks], props, cost)
        for (i, _, (slot,)), y2 in zip(asks, props):
            j = slot - c * (step + 1)
            y = states[i][j]
            a = acceptance(float(y.score), float(y2.score), len(y.ids or ()),  # type: ignore[arg-type]
                           len(y2.ids or ()), knob.beta)
            if float(u[i, j, 1]) < a:
                states[i][j] = y2
                accepted[i] += 1
    total = knob.steps * c
    return [(rank(list(chain)), {"accept_rate": n / total})
            for chain, n in zip(states, accepted)]


def _uniforms(prep: Prepared, chains: int, step: int) -> torch.Tensor:
    """Each chain's (cut, accept) uniforms at ``step``: ``(prompts, chains, 2)``."""
    keys = torch.tensor(prep.keys, dtype=torch.long).repeat_interleave(chains)
    slots = (CHAIN_SLOT - torch.arange(chains, dtype=torch.long)).repeat(len(prep.keys))
    streams = stream_keys(keys, slots)
    pos = torch.full_like(streams, 2 * step)
    out = torch.stack([uniforms(streams, pos), uniforms(streams, pos + 1)], dim=1)
    return out.view(len(prep.keys), chains, 2)


def _sample(backend: Backend, prep: Prepared, sampling: SamplingParams, cost: list[Cost],
            asks: list[Ask]) -> list[Entry]:
    """One continuation per slot of each ask, to the end of the response (one call per room
    left, as prefixes differ in length); the whole responses, in the asks' order."""
    max_new = sampling.max_new_tokens
    keys = torch.tensor([prep.keys[i] for i, _, slots in asks for _ in slots], dtype=torch.long)
    flat = stream_keys(keys, torch.tensor([s for _, _, slots in asks for s in slots],
                                          dtype=torch.long)).tolist()
    reqs, lo, read = [], 0, {}
    for i, e, slots in asks:
        streams, lo = tuple(flat[lo:lo + len(slots)]), lo + len(slots)
        reqs.append(Request(prep.prompts[i], e.text, tuple(e.ids or ()), streams, e.tokens))
        if i not in read:  # the prompt as the base counts it, once
            read[i] = read_tokens(backend, prep.prompts[i])
        cost[i].base_read += read[i] + e.tokens
    out = complete_by_room(backend, reqs, [max_new - e.tokens for _, e, _ in asks], sampling)
    entries = []
    for (i, e, _), conts in zip(asks, out):
        for ct in conts:
            cost[i].base_tokens += ct.n_tokens
            entries.append(e.child(ct))  # a start or a cut prefix: round 1
    return entries


def qalign_at_budget(knob: QAlignParams, b: int, max_new: int) -> QAlignParams:
    """steps = b // chains - 1 (chains lowered to b // 2 when b < 2 * chains): a chain's start
    and each of its proposals sample at most max_new_tokens, so base tokens are at most
    chains * (steps + 1) * max_new <= b * max_new, the budget, even when every cut is at 0."""
    if b < 2:
        raise W2SError(f"qalign: a start and one step need a budget of at least 2 responses of "
                       f"{max_new} tokens, got {b}")
    chains = min(knob.chains, b // 2)
    return dataclasses.replace(knob, chains=chains, steps=b // chains - 1)

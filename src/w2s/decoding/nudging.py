"""Nudging: the base writes, the small tuned model takes over a word where the base is unsure.

Fei et al., "Nudging: Inference-time Alignment via Model Collaboration" (2024, arXiv
2410.09300). Base and aligned models disagree mostly where the base is uncertain, so:

    repeat: the base continues the response by up to ``chunk`` tokens, reporting at each token
            the probability of its most likely token there (top-1);
            at the first token whose top-1 probability is below gamma, cut the base's text
            before that token, and let the small *tuned* model write the next word (its tokens
            up to the first whitespace after some text, at most ``word_tokens``);
    until the response ends (EOS, a stop string or max_new_tokens).

The hand-over happens on text, so the small model may have another vocabulary and the base may
be a black box that reports top-1 log-probabilities (``logprobs=1``). Knobs: gamma (0.3-0.4
in the paper), chunk, word_tokens. ``Result.stats``: the fraction of response tokens the small
model wrote (``small_fraction``) and the number of hand-overs (``nudges``). The base's random
stream is slot 0 of the prompt, the small model's slot 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from w2s.decoding.common import (
    Entry,
    answer_results,
    knobs,
    prepare,
    read_tokens,
    require,
    sampling_of,
    small_writer,
    writer_streams,
)
from w2s.decoding.observe import checkpoint, emit
from w2s.guides import Guide
from w2s.models.base import Backend, Continuation, Request, TopLogprobsBackend
from w2s.params import NudgingParams, SamplingParams
from w2s.result import Cost, Result


@dataclass
class _Row:
    text: str = ""
    tokens: int = 0  # response tokens so far: the base's plus the small model's
    small: int = 0  # of which the small model wrote
    nudges: int = 0
    ended: bool = False


def first_unsure(top_logprobs: Sequence[float], gamma: float) -> int | None:
    """Index of the first token whose top-1 probability is below ``gamma``, or None."""
    bound = math.log(gamma) if gamma > 0 else -math.inf
    return next((i for i, lp in enumerate(top_logprobs) if lp < bound), None)


def one_word(c: Continuation) -> int:
    """How many of the small model's new tokens make its first word: tokens are taken while
    the new text, leading whitespace aside, holds no whitespace (at least one token)."""
    assert c.prefixes is not None
    start, k = c.prefixes[0], 0
    for i in range(1, len(c.prefixes)):
        if any(ch.isspace() for ch in c.prefixes[i][len(start):].lstrip()):
            break
        k = i
    return max(k, min(1, len(c.prefixes) - 1))


def nudging(backend: Backend, guide: Guide | None, prompts: Sequence[str],
            nudge: NudgingParams | None = None, sampling: SamplingParams | None = None
            ) -> list[Result]:
    """Nudge the base with the small tuned model of ``guide`` (a tuned/untuned pair)."""
    nudge = knobs(nudge, NudgingParams, "nudging")
    sampling = sampling_of(sampling)
    writer = small_writer(guide, "nudging")
    backend = require(backend, TopLogprobsBackend, "nudging")
    small = require(writer, TopLogprobsBackend, "nudging", "small tuned")
    prep = prepare(backend, prompts, sampling)
    base_streams, small_streams = writer_streams(prep)
    rows = [_Row() for _ in prep.prompts]
    cost = [Cost() for _ in prep.prompts]
    max_new = sampling.max_new_tokens
    while True:
        live = [i for i, r in enumerate(rows) if not r.ended and r.tokens < max_new]
        if not live:
            break
        checkpoint()
        for i in live:  # a token-level method: what is written stays
            emit(i, rows[i].text)
        handover = _base_round(backend, prep.prompts, rows, cost, live, base_streams, nudge,
                               sampling)
        if handover:
            _small_round(small, prep.prompts, rows, cost, handover, small_streams, nudge,
                         sampling)
    entries = [Entry(None, r.text, r.ended, tokens=r.tokens) for r in rows]
    results = answer_results("nudging", guide, prep, entries, cost, nudge.to_dict(), sampling)
    for res, r in zip(results, rows):
        res.stats = {"small_fraction": r.small / r.tokens if r.tokens else 0.0,
                     "nudges": r.nudges}
    return results


def _base_round(backend: TopLogprobsBackend, prompts: Sequence[str], rows: list[_Row], cost: list[Cost],
                live: list[int], streams: list[int], nudge: NudgingParams,
                sampling: SamplingParams) -> list[int]:
    """The base continues every live response by up to ``chunk`` tokens and keeps them up to
    its first unsure one; returns the rows to hand over to the small model."""
    max_new = sampling.max_new_tokens
    reqs = [Request(prompts[i], rows[i].text, None, (streams[i],), rows[i].tokens)
            for i in live]
    for i in live:
        cost[i].base_read += read_tokens(backend, prompts[i], rows[i].tokens)
    conts = backend.complete_top(
        reqs, min(nudge.chunk, max_new - min(rows[i].tokens for i in live)), sampling,
        until_below=math.log(nudge.gamma) if nudge.gamma > 0 else None)
    handover = []
    for i, [c] in zip(live, conts):
        r = rows[i]
        cost[i].base_tokens += c.n_tokens
        take = min(c.n_tokens, max_new - r.tokens)
        cut = first_unsure((c.top_logprobs or [])[:take], nudge.gamma)
        assert c.prefixes is not None
        if cut is None:
            r.text = c.response if take == c.n_tokens else c.prefixes[take]
            r.tokens += take
            r.ended = c.ended and take == c.n_tokens
        else:  # the base keeps its tokens before the unsure one; the small model goes on
            r.text, r.tokens = c.prefixes[cut], r.tokens + cut
            if r.tokens < max_new:
                handover.append(i)
    return handover


def _small_round(small: TopLogprobsBackend, prompts: Sequence[str], rows: list[_Row], cost: list[Cost],
                 handover: list[int], streams: list[int], nudge: NudgingParams,
                 sampling: SamplingParams) -> None:
    """The small tuned model writes one word where the base was unsure."""
    max_new = sampling.max_new_tokens
    reqs = [Request(prompts[i], rows[i].text, None, (streams[i],), rows[i].tokens)
            for i in handover]
    words = small.complete_top(reqs, nudge.word_tokens, sampling)
    for i, [c] in zip(handover, words):
        r = rows[i]
        k = min(one_word(c), max_new - r.tokens)
        assert c.prefixes is not None
        r.text = c.prefixes[k]
        r.tokens += k
        r.small += k
        r.nudges += 1
        cost[i].guide_tokens += c.n_tokens
        r.ended = c.ended and k == c.n_tokens

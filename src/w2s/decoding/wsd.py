"""Weak-to-Strong Decoding (WSD): the small tuned model drafts the opening, the base the rest.

Song et al., "Well Begun is Half Done: Low-resource Preference Alignment by Weak-to-Strong
Decoding" (ACL Findings 2025, arXiv 2506.07434). Aligned responses are hard for a base model
mostly at their beginning; once on an aligned path it continues well. So, as the authors' code
does it (``inference/check.py``, ``get_accept_index``):

    the small tuned model drafts up to ``max_draft`` tokens;
    the base reads prompt + draft, the draft re-tokenised with its own tokenizer, and gives
    p_j, its probability of draft token j;
    the switch is the first j >= window - 1 where the geometric mean of p_{j-window+1..j}
    is >= threshold (the paper's defaults: window 6, threshold 0.8); none: the whole draft;
    the base keeps draft tokens 0..j and writes the rest, up to max_new_tokens in all.

The hand-over is on text, so the small model may have another vocabulary; the base must score
given tokens (:class:`~w2s.models.base.TokenScoringBackend`, an in-process model). One
deviation: where no window passes and the draft ended by itself (EOS or a stop string), the
draft is the answer (the authors' base would write on after the small model's end).

``Result.stats``: ``small_fraction`` and ``base_fraction``, the shares of the response's
tokens (the base's tokens) each model wrote (Nudging's key, so eval reports show it as
"small wrote N%"); ``draft_tokens``, the small model's tokens drafted;
``switch_at``, the draft tokens (the base's) kept, where the base took over; ``switched``,
whether a window passed. The base's random stream is slot 0 of the prompt, the small model's
slot 1 (as Nudging's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from w2s.decoding.common import (
    Entry,
    answer_results,
    complete_by_room,
    complete_checked,
    knobs,
    prepare,
    read_tokens,
    require,
    sampling_of,
    small_writer,
    writer_streams,
)
from w2s.decoding.observe import checkpoint
from w2s.guides import Guide
from w2s.models.base import Backend, Continuation, Request, TokenScoringBackend
from w2s.params import SamplingParams, WSDParams
from w2s.result import Cost, Result


@dataclass
class _Row:
    draft: Continuation  # the small model's
    ids: list[int]  # the draft in the base's tokens, at most max_new_tokens of them
    whole: int  # how many base tokens the whole draft re-encodes to
    keep: int  # draft tokens (the base's) kept
    switched: bool
    text: str = ""
    tokens: int = 0
    ended: bool = False


def switch_index(logprobs: Sequence[float], threshold: float, window: int) -> int | None:
    """The first draft token ``j`` (from ``window - 1`` on) where the base's geometric-mean
    probability of draft tokens ``j - window + 1 .. j`` is >= ``threshold``, or None."""
    bound = math.log(threshold)
    for j in range(window - 1, len(logprobs)):
        if sum(logprobs[j - window + 1: j + 1]) / window >= bound:
            return j
    return None


def wsd(backend: Backend, guide: Guide | None, prompts: Sequence[str],
        params: WSDParams | None = None, sampling: SamplingParams | None = None
        ) -> list[Result]:
    """The small tuned model of ``guide`` (a tuned/untuned pair) drafts, the base takes over."""
    params = knobs(params, WSDParams, "wsd")
    sampling = sampling_of(sampling)
    writer = small_writer(guide, "wsd")
    backend = require(backend, TokenScoringBackend, "wsd")
    small = require(writer, Backend, "wsd", "small tuned")
    prep = prepare(backend, prompts, sampling)
    base_streams, small_streams = writer_streams(prep)
    cost = [Cost() for _ in prep.prompts]
    checkpoint()
    rows = _draft(backend, small, prep.prompts, cost, small_streams, params, sampling)
    checkpoint()
    _take_over(backend, prep.prompts, rows, cost, base_streams, sampling)
    entries = [Entry(None, r.text, r.ended, tokens=r.tokens) for r in rows]
    results = answer_results("wsd", guide, prep, entries, cost, params.to_dict(), sampling)
    for res, r in zip(results, rows):
        small_fraction = r.keep / r.tokens if r.tokens else float(not r.switched)
        res.stats = {"small_fraction": small_fraction,
                     "base_fraction": 1.0 - small_fraction,
                     "draft_tokens": r.draft.n_tokens, "switch_at": r.keep,
                     "switched": r.switched}
    return results


def _draft(backend: TokenScoringBackend, small: Backend, prompts: Sequence[str],
           cost: list[Cost], streams: list[int], params: WSDParams,
           sampling: SamplingParams) -> list[_Row]:
    """The small model drafts every response; the base scores each draft in its own tokens
    and the switch rule says how much of it to keep."""
    max_new = sampling.max_new_tokens
    reqs = [Request(p, "", None, (s,), 0) for p, s in zip(prompts, streams)]
    drafts = [c for [c] in complete_checked(small, reqs, min(params.max_draft, max_new),
                                            sampling)]
    whole = backend.encode_responses([d.response for d in drafts])
    ids = [x[:max_new] for x in whole]
    lps = backend.token_logprobs([backend.encode_prompt(p) for p in prompts], ids)
    rows = []
    for i, (d, x, lp) in enumerate(zip(drafts, ids, lps)):
        cost[i].guide_tokens += d.n_tokens
        cost[i].base_read += read_tokens(backend, prompts[i], len(x))
        j = switch_index(lp.double().tolist(), params.threshold, params.window)
        rows.append(_Row(d, x, len(whole[i]), len(x) if j is None else j + 1, j is not None))
    return rows


def _take_over(backend: TokenScoringBackend, prompts: Sequence[str], rows: list[_Row],
               cost: list[Cost], streams: list[int], sampling: SamplingParams) -> None:
    """The base continues each kept draft up to ``max_new_tokens`` tokens in all (one call
    per remaining length); a draft that ended with no switch is the answer as it is."""
    max_new = sampling.max_new_tokens
    live = []
    for i, r in enumerate(rows):
        r.tokens = r.keep
        r.text = r.draft.response if r.keep == r.whole else backend.decode(r.ids[:r.keep])
        if not r.switched and r.draft.ended and r.keep == r.whole:
            r.ended = True
        elif r.keep < max_new:
            live.append(i)
    reqs = [Request(prompts[i], rows[i].text, tuple(rows[i].ids[:rows[i].keep]),
                    (streams[i],), rows[i].keep) for i in live]
    for i in live:
        cost[i].base_read += read_tokens(backend, prompts[i], rows[i].keep)
    rooms = [max_new - rows[i].keep for i in live]
    for i, [c] in zip(live, complete_by_room(backend, reqs, rooms, sampling)):
        r = rows[i]
        r.text, r.tokens, r.ended = c.response, r.keep + c.n_tokens, c.ended
        cost[i].base_tokens += c.n_tokens

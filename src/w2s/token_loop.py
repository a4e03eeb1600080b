"""The one per-token loop of w2s.

Both places that sample a token at a time run it: plain sampling from one model
(:meth:`w2s.models.hf.HFModel.sample_chunk`, which every search and Nudging go through) and
every token-level fusion rule (:func:`w2s.decoding.token_level.decode_fused`: EFT, multi-guide
EFT, DLF). The loop owns what must be the same in both -- the random draw of token ``t`` of a
row from its stream at its position, appending to the rows still going, ending a row at EOS or a
stop string, and stopping early once no row goes on -- so "EFT with beta = 0 is plain sampling,
token for token" holds by construction. What differs is passed in: where the scores come from,
how the model(s) advance, and what to record after each step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from w2s.logits import choose
from w2s.params import SamplingParams
from w2s.rng import uniforms


def decode_tokens(next_scores: Callable[[], torch.Tensor],
                  advance: Callable[[torch.Tensor], None],
                  streams: torch.Tensor, positions: torch.Tensor, max_tokens: int,
                  sampling: SamplingParams, ended: Callable[[int, list[int]], bool], *,
                  after: Callable[[torch.Tensor, torch.Tensor, list[int], list[list[int]]], None]
                  | None = None,
                  hold: Callable[[int], bool] | None = None,
                  ) -> tuple[list[list[int]], list[bool], torch.Tensor | None]:
    """Sample up to ``max_tokens`` tokens for every row.

    - ``next_scores()``: ``(B, V)`` logits (or log-probabilities) of every row's next token;
    - ``advance(tok)``: feed the chosen tokens ``(B,)`` to the model(s) (not after the last);
    - ``streams``, ``positions``: ``(B,)`` each row's random stream and the position of its
      first new token (token ``t`` of the call is drawn at ``positions + t``);
    - ``ended(i, ids)``: row ``i`` ended after its new tokens ``ids`` (EOS or a stop string);
    - ``after(scores, tok, taken, new)``: once per step, with the rows that took a token and
      every row's new tokens so far (KL sums, top log-probabilities, streaming);
    - ``hold(i)``: row ``i``, having just taken a token, takes no more in this call (it stays
      unfinished: Nudging's unsure token).

    Returns each row's new token ids, whether it is still going (not ended), and the last
    tokens chosen ``(B,)`` (not yet fed to the model), or None if no step ran.
    """
    rows = positions.shape[0]
    new: list[list[int]] = [[] for _ in range(rows)]
    alive, held = [True] * rows, [False] * rows
    tok = None
    for t in range(max_tokens):
        scores = next_scores()  # (B, V)
        u = uniforms(streams, positions + t).to(scores.device)  # (B,)
        tok = choose(scores, sampling, u)  # (B,)
        taken = []
        for i, x in enumerate(tok.tolist()):
            if alive[i] and not held[i]:
                new[i].append(x)
                taken.append(i)
                alive[i] = not ended(i, new[i])
        if after is not None:
            after(scores, tok, taken, new)
        if hold is not None:
            for i in taken:
                held[i] = hold(i)
        if not any(a and not h for a, h in zip(alive, held)) or t == max_tokens - 1:
            break
        advance(tok)
    return new, alive, tok

"""A scripted backend for exact tests of the search algorithm itself (no neural network).

Tokens 0..4 are the letters a..e and token 5 is EOS; the token at position t of a row is a
pure function of that row's random stream and t, exactly like the real backend's sampling.
Every call is recorded (parents, random streams, children) so tests can check what was expanded
and with which random slot.
"""

from __future__ import annotations

import torch

from w2s.guides import Guide
from w2s.models.base import Continuation
from w2s.rng import uniforms
from w2s.stopping import Stopper

LETTERS = "abcde"
EOS = 5


class ScriptedBackend:
    name = "scripted"

    def __init__(self, eos_weight: float = 1.0) -> None:
        self.calls: list[dict] = []
        self.eos_weight = eos_weight

    def encode_prompt(self, prompt: str) -> list[int]:
        return [0]

    def check_fits(self, prompt_ids, max_new_tokens):  # noqa: ANN001
        return None

    def decode(self, ids):  # noqa: ANN001
        return "".join(LETTERS[i] for i in ids if i != EOS)

    def response_text(self, ids, stop):  # noqa: ANN001
        return Stopper(self.decode, [EOS], stop).text(ids)

    def sample(self, prompt_ids, response_ids, streams, max_tokens, sampling):  # noqa: ANN001
        self.calls.append({"parents": [list(r) for r in response_ids], "max_tokens": max_tokens,
                           "streams": streams.tolist()})
        stopper = Stopper(self.decode, [] if sampling.ignore_eos else [EOS], sampling.stop)
        probs = torch.tensor([1.0] * 5 + [self.eos_weight])
        cdf = (probs / probs.sum()).cumsum(0)
        out = []
        for row, resp in enumerate(response_ids):
            new: list[int] = []
            for t in range(max_tokens):
                u = float(uniforms(streams[row: row + 1], torch.tensor([len(resp) + t]))[0])
                new.append(int((cdf <= u).sum().clamp(max=5)))
                if stopper.ended(resp + new):
                    break
            out.append(Continuation(new, stopper.ended(resp + new)))
        self.calls[-1]["children"] = [(r + c.token_ids, c.ended) for r, c in zip(response_ids, out)]
        return out


class CountGuide(Guide):
    """Score = number of 'a' minus 0.1 * number of 'e'; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, float]]] = []

    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
        s = torch.tensor([r.count("a") - 0.1 * r.count("e") for r in responses])
        self.calls.append(list(zip(responses, s.tolist())))
        return s, sum(len(r) for r in responses)

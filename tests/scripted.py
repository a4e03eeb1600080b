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
    """A text-level :class:`w2s.models.Backend` only (no search state, no logits).

    ``ids=False`` makes it report text only (``token_ids=None``), as a remote engine may: it
    then reads each response's tokens back from the text (one letter per token). Each
    continuation's ``logprob`` is exact under its fixed next-token distribution.
    """

    name = "scripted"
    batch_size = 64

    def __init__(self, eos_weight: float = 1.0, *, ids: bool = True,
                 logprobs: bool = True) -> None:
        self.calls: list[dict] = []
        self.eos_weight = eos_weight
        self.ids = ids
        self.logprobs = logprobs  # False: reports no log-probabilities of its samples

    def check_prompts(self, prompts, max_new_tokens):  # noqa: ANN001
        return None

    def decode(self, ids):  # noqa: ANN001
        return "".join(LETTERS[i] for i in ids if i != EOS)

    def complete(self, requests, max_tokens, sampling):  # noqa: ANN001
        self.calls.append({"parents": [], "max_tokens": max_tokens, "streams": [],
                           "children": []})
        call = self.calls[-1]
        stopper = Stopper(self.decode, [] if sampling.ignore_eos else [EOS], sampling.stop)
        probs = torch.tensor([1.0] * 5 + [self.eos_weight])
        cdf = (probs / probs.sum()).cumsum(0)
        out = []
        for req in requests:
            resp = (list(req.response_ids) if req.response_ids is not None
                    else [LETTERS.index(c) for c in req.response])
            conts = []
            for stream in req.streams:
                new: list[int] = []
                for t in range(max_tokens):
                    u = float(uniforms(torch.tensor([stream]), torch.tensor([len(resp) + t]))[0])
                    new.append(int((cdf <= u).sum().clamp(max=5)))
                    if stopper.ended(resp + new):
                        break
                ended = stopper.ended(resp + new)
                call["parents"].append(list(resp))
                call["streams"].append(stream)
                call["children"].append((resp + new, ended))
                logp = float((probs / probs.sum()).log()[new].sum()) if self.logprobs else None
                conts.append(Continuation(stopper.text(resp + new), new if self.ids else None,
                                          len(new), "stop" if ended else "length",
                                          logprob=logp))
            out.append(conts)
        return out


class CountGuide(Guide):
    """Score = number of 'a' minus 0.1 * number of 'e'; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, float]]] = []

    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
        s = torch.tensor([r.count("a") - 0.1 * r.count("e") for r in responses])
        self.calls.append(list(zip(responses, s.tolist())))
        return s, sum(len(r) for r in responses)

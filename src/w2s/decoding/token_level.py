"""Token-level decoding: one loop, many fusion rules.

Every token-level method samples from a distribution built, token by token, from the base's
next-token log-probabilities and those of small guide models that share its vocabulary:

    log p(y_t | x, y_<t) = rule(log pi_base(. | .), [log pi_m(. | .) for each guide model m])

renormalised, then sampled with the usual temperature/top-k/top-p. The loop is written once
here: batching, a KV cache per model (each model formats the prompt its own way), the
counter-based random streams (slot 0 of each prompt, so a rule that returns the base unchanged
is plain sampling token for token), EOS and stop strings, and the exact per-token KL of the
fused distribution from the base, summed along the sampled path. A method is a
:class:`FusionRule`: EFT is ``base + beta (tuned - untuned)``; multi-guide fusion, dynamic
logit fusion and deferral rules are other rules, not other loops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from w2s.decoding.common import (
    Entry,
    answer_results,
    prepare,
    read_tokens,
    require,
)
from w2s.decoding.observe import active, checkpoint, emit
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.logits import same_vocabulary, token_kl
from w2s.models.base import Backend, LogitsBackend
from w2s.params import SamplingParams
from w2s.result import Cost, Result
from w2s.rng import stream_keys
from w2s.token_loop import decode_tokens


class FusionRule(Protocol):
    """How one token-level method fuses next-token log-probabilities."""

    def models(self) -> list[tuple[str, Any]]:
        """The guide models besides the base, with their roles (for error messages)."""
        ...

    def __call__(self, base: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        """Fused (unnormalised) log-probabilities ``(B, V)`` from the base's and each guide
        model's normalised log-probabilities ``(B, V)``."""
        ...


def check_same_vocabulary(method: str, base: LogitsBackend,
                          others: Sequence[tuple[str, LogitsBackend]]) -> None:
    """Token-level methods need one vocabulary; say which models differ and how."""
    for role, m in others:
        if not same_vocabulary(base, m):
            raise W2SError(
                f"{method} needs one vocabulary, but the base {base.name!r} has "
                f"{len(base.vocabulary)} tokens and the {role} model {m.name!r} has a different "
                f"vocabulary of {len(m.vocabulary)} tokens; use cbs or bon, which work across "
                "vocabularies")


def fused_logprobs(rule: FusionRule, logits: list[torch.Tensor]) -> torch.Tensor:
    """``(B, V)`` normalised fused log-probabilities from raw logits (base first)."""
    lps = [x.float().log_softmax(-1) for x in logits]
    return rule(lps[0], lps[1:]).log_softmax(-1)


def decode_fused(backend: Backend, guide: Guide | None, prompts: Sequence[str], rule: FusionRule,
                 sampling: SamplingParams, *, method: str, params: dict[str, Any]) -> list[Result]:
    """Sample from ``rule``'s fused distribution; the guide (if any) scores the results."""
    base = require(backend, LogitsBackend, method)
    others = [(role, require(m, LogitsBackend, method, role)) for role, m in rule.models()]
    check_same_vocabulary(method, base, others)
    prep = prepare(base, prompts, sampling)
    models = [base] + [m for _, m in others]
    max_new = sampling.max_new_tokens
    stopper = base.stopper(sampling)
    v = min(m.vocab_size for m in models)
    streams = stream_keys(torch.tensor(prep.keys, dtype=torch.long),
                          torch.zeros(len(prep.keys), dtype=torch.long))  # slot 0
    states = [m.start([m.encode_prompt(p) for p in prep.prompts]) for m in models]
    rows = len(prep.prompts)
    kl = torch.zeros(rows, dtype=torch.float64)
    watched = active()
    base_logits: list[torch.Tensor] = []  # this step's, for the KL

    def fused() -> torch.Tensor:
        checkpoint()
        logits = [s.logits[:, :v].to(base.device) for s in states]  # each (B, V)
        base_logits[:] = logits[:1]
        return fused_logprobs(rule, logits)  # (B, V)

    def advance(tok: torch.Tensor) -> None:
        states[:] = [m.step(s, tok.to(m.device)) for m, s in zip(models, states)]

    def record(logp: torch.Tensor, tok: torch.Tensor, taken: list[int],
               new: list[list[int]]) -> None:
        step_kl = token_kl(logp, base_logits[0], sampling.temperature).cpu()  # (B,)
        for i in taken:
            kl[i] += step_kl[i]
            if watched:
                emit(i, stopper.text(new[i]))

    new, alive, _ = decode_tokens(fused, advance, streams, torch.zeros(rows, dtype=torch.long),
                                  max_new, sampling, lambda i, ids: stopper.ended(ids),
                                  after=record)
    cost = [Cost(base_tokens=len(ids), guide_tokens=len(others) * len(ids),
                 base_read=read_tokens(base, p)) for ids, p in zip(new, prep.prompts)]
    entries = [Entry(ids, stopper.text(ids), not a, tokens=len(ids)) for ids, a in zip(new, alive)]
    results = answer_results(method, guide, prep, entries, cost, params, sampling)
    if sampling.temperature > 0:
        for r, x in zip(results, kl.tolist()):
            r.stats = {"kl": x}
    return results

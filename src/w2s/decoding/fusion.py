"""Token-level logit arithmetic: emulated fine-tuning (EFT) / proxy tuning.

Mitchell et al. 2023 (EFT, "up-scaling") and Liu et al. 2024 (proxy tuning):

    log p(y_t | x, y_<t) = log pi_base(y_t | .) + beta * (log pi_tuned(y_t | .) - log pi_untuned(y_t | .))

renormalised over the shared vocabulary, then sampled with the usual temperature/top-k/top-p.
Each of the three models keeps its own KV cache and its own prompt format; all three must share
one vocabulary (the arithmetic is per token id). With beta = 0 this is plain sampling from the
base, token for token (same random slot 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from w2s.decoding.common import Entry, finish_costs, prepare, score_entries
from w2s.errors import W2SError
from w2s.guides import Guide, PairGuide
from w2s.logits import choose, same_vocabulary, token_kl
from w2s.models.base import Backend
from w2s.models.hf import HFModel
from w2s.params import EFTParams, SamplingParams
from w2s.result import Cost, Result
from w2s.rng import stream_keys, uniforms


def eft_logprobs(base: torch.Tensor, tuned: torch.Tensor, untuned: torch.Tensor,
                 beta: float) -> torch.Tensor:
    """Fused next-token log-probabilities ``(B, V)`` from three logit tensors ``(B, V)``."""
    fused = base.float().log_softmax(-1) + beta * (tuned.float().log_softmax(-1)
                                                    - untuned.float().log_softmax(-1))
    return fused.log_softmax(-1)


def check_same_vocabulary(base: HFModel, others: Sequence[tuple[str, HFModel]]) -> None:
    """Token-level methods need one vocabulary; say which models differ and how."""
    vocab = base.vocabulary
    for role, m in others:
        if not same_vocabulary(base, m):
            raise W2SError(
                f"eft needs one vocabulary, but the base {base.name!r} has {len(vocab)} tokens and "
                f"the {role} model {m.name!r} has a different vocabulary of "
                f"{len(m.vocabulary)} tokens; use cbs or bon, which work across "
                "vocabularies")


def eft(backend: Backend, guide: Guide | None, prompts: Sequence[str],
        eft_params: EFTParams | None = None, sampling: SamplingParams | None = None) -> list[Result]:
    """Sample from the EFT/proxy-tuned distribution; ``guide`` must be a :class:`PairGuide`."""
    eft_params = eft_params or EFTParams()
    sampling = sampling or SamplingParams()
    if not isinstance(guide, PairGuide):
        raise W2SError("eft needs a tuned/untuned pair as its guide (--tuned and --untuned)")
    if not isinstance(backend, HFModel):
        raise W2SError("eft needs next-token log-probabilities: use a white-box (transformers) base")
    tuned, untuned = guide.tuned, guide.untuned
    check_same_vocabulary(backend, [("tuned", tuned), ("untuned", untuned)])
    prep = prepare(backend, prompts, sampling)
    max_new, beta = sampling.max_new_tokens, eft_params.beta
    stopper = backend.stopper(sampling)
    v = min(backend.vocab_size, tuned.vocab_size, untuned.vocab_size)
    streams = stream_keys(torch.tensor(prep.keys, dtype=torch.long),
                          torch.zeros(len(prep.keys), dtype=torch.long))  # slot 0
    states = [m.start(ids) for m, ids in (
        (backend, prep.ids),
        (tuned, [tuned.encode_prompt(p) for p in prep.prompts]),
        (untuned, [untuned.encode_prompt(p) for p in prep.prompts]))]
    rows = len(prep.prompts)
    new: list[list[int]] = [[] for _ in range(rows)]
    alive = [True] * rows
    kl = torch.zeros(rows, dtype=torch.float64)
    for t in range(max_new):
        logits = [s.logits[:, :v].to(backend.device) for s in states]
        logp = eft_logprobs(*logits, beta)  # (B, V)
        pos = torch.full((rows,), t, dtype=torch.long)
        tok = choose(logp, sampling, uniforms(streams, pos).to(backend.device))  # (B,)
        step_kl = token_kl(logp, logits[0], sampling.temperature).cpu()  # (B,)
        for i, x in enumerate(tok.tolist()):
            if alive[i]:
                new[i].append(x)
                kl[i] += step_kl[i]
                alive[i] = not stopper.ended(new[i])
        if not any(alive) or t == max_new - 1:
            break
        states = [m.step(s, tok.to(m.device)) for m, s in zip((backend, tuned, untuned), states)]
    cost = [Cost(base_tokens=len(ids), guide_tokens=2 * len(ids)) for ids in new]
    entries = [Entry(ids, stopper.text(ids), not a) for ids, a in zip(new, alive)]
    score_entries(guide, prep, list(range(rows)), entries, [Cost() for _ in entries])
    cost = finish_costs(prep, cost)
    params = {"method": "eft", **eft_params.to_dict(), **sampling.to_dict()}
    results = [Result.from_candidates(p, "eft", [e.candidate()], c, params)
               for p, e, c in zip(prep.prompts, entries, cost)]
    if sampling.temperature > 0:
        for r, x in zip(results, kl.tolist()):
            r.stats = {"kl": x}
    return results


"""Decoders, looked up by name in one registry (:mod:`w2s.decoding.registry`). Each is a plain
function ``decoder(backend, guide, prompts, <method params>, sampling) -> list[Result]``."""

from __future__ import annotations

from w2s.decoding.beam import cbs, cbs_at_budget
from w2s.decoding.best_of_n import best_of_n, bon_at_budget
from w2s.decoding.eft import eft, eft_logprobs
from w2s.decoding.mcts import mcts, mcts_at_budget
from w2s.decoding.multi_guide import dlf
from w2s.decoding.nudging import nudging
from w2s.decoding.particles import particle_filter, particles_at_budget
from w2s.decoding.pruned_bon import pruned_at_budget, pruned_bon
from w2s.decoding.registry import (
    DECODERS,
    DecoderSpec,
    decoders,
    default_method,
    get_decoder,
    register,
    unregister,
)
from w2s.decoding.sampling import sample
from w2s.decoding.treebon import treebon, treebon_at_budget
from w2s.models.base import LogitsBackend, TopLogprobsBackend
from w2s.params import (
    BestOfNParams,
    DLFParams,
    EFTParams,
    MCTSParams,
    NudgingParams,
    ParticleParams,
    PrunedBoNParams,
    SearchParams,
    TreeBoNParams,
)

register(DecoderSpec("sample", sample, "plain sampling from the base (temperature, top-p, "
                     "top-k, stop strings)", guide="optional", kl="exact"))
register(DecoderSpec("bon", best_of_n, "Best-of-N: N base samples, the guide picks the best",
                     BestOfNParams, rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
                     at_budget=bon_at_budget))
register(DecoderSpec("cbs", cbs, "weak-to-strong search: chunk-level beam search (W, K, L) "
                     "scored by the guide", SearchParams, rows_per_prompt=lambda p: p.max_rows(),
                     kl="bound", ranked=True, at_budget=cbs_at_budget))
register(DecoderSpec("eft", eft, "EFT / proxy tuning: base + beta (tuned - untuned) logits, "
                     "same vocabulary", EFTParams, needs=(LogitsBackend,), guide="pair",
                     kl="exact"))
register(DecoderSpec("dlf", dlf, "Dynamic Logit Fusion: EFT with the experts' strengths chosen "
                     "at every token to match their own KL shift, same vocabulary", DLFParams,
                     needs=(LogitsBackend,), guide="pair", kl="exact"))
register(DecoderSpec("nudging", nudging, "Nudging: the base writes; where its top-1 token "
                     "probability is below gamma the small tuned model writes the next word",
                     NudgingParams, needs=(TopLogprobsBackend,), guide="pair"))

register(DecoderSpec("pruned_bon", pruned_bon, "early-pruned Best-of-N (Speculative "
                     "Rejection): the guide drops the worst partial candidates every few tokens",
                     PrunedBoNParams, rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
                     at_budget=pruned_at_budget))
register(DecoderSpec("treebon", treebon, "TreeBoN: a tree of doubling segments; each layer keeps "
                     "the best partial responses and branches them", TreeBoNParams,
                     rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
                     at_budget=treebon_at_budget))
register(DecoderSpec("particles", particle_filter, "particle filtering: P partial responses "
                     "resampled in proportion to exp(guide increment / tau)", ParticleParams,
                     rows_per_prompt=lambda p: p.particles, ranked=True,
                     at_budget=particles_at_budget))

register(DecoderSpec("mcts", mcts, "Monte Carlo tree search over base chunks (PUCT), valued by "
                     "the guide per token", MCTSParams,
                     rows_per_prompt=lambda p: p.k, ranked=True, at_budget=mcts_at_budget))

__all__ = ["DECODERS", "DecoderSpec", "best_of_n", "cbs", "decoders", "default_method", "dlf", "eft", "eft_logprobs", "get_decoder",
           "mcts", "nudging", "particle_filter", "pruned_bon", "register", "treebon", "sample", "unregister"]

"""Decoders, looked up by name in one registry (:mod:`w2s.decoding.registry`). Each is a plain
function ``decoder(backend, guide, prompts, <method params>, sampling) -> list[Result]``, in the
module named after its method: ``w2s.decoding.cbs:cbs``, ``w2s.decoding.bon:bon``, ...

Each entry names its function (and budget rule) as ``"module:function"``, imported on first
call: their modules import torch, and listing the decoders for ``--help``, ``/w2s/methods`` or
a config check does not need it. The package exports the registry only; the functions are
``w2s.cbs``, ``w2s.bon``, ... (or ``from w2s.decoding.cbs import cbs``)."""

from __future__ import annotations

from w2s.decoding.registry import (
    DECODERS,
    DecoderSpec,
    decoders,
    default_method,
    get_decoder,
    register,
    unregister,
)
from w2s.models.base import LogitsBackend, TokenScoringBackend, TopLogprobsBackend
from w2s.params import (
    BestOfNParams,
    DLFParams,
    EFTParams,
    MCTSParams,
    NudgingParams,
    ParticleParams,
    PrunedBoNParams,
    QAlignParams,
    SearchParams,
    TreeBoNParams,
    WSDParams,
)

_D = "w2s.decoding"

register(DecoderSpec(
    "sample", f"{_D}.sample:sample", "plain sampling from the base (temperature, top-p, "
    "top-k, stop strings)", guide="optional", kl="exact"))
register(DecoderSpec(
    "bon", f"{_D}.bon:bon", "Best-of-N: N base samples, the guide picks the best",
    BestOfNParams, rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
    at_budget=f"{_D}.bon:bon_at_budget"))
register(DecoderSpec(
    "cbs", f"{_D}.cbs:cbs", "weak-to-strong search: chunk-level beam search (W, K, L) "
    "scored by the guide", SearchParams, rows_per_prompt=lambda p: p.max_rows(),
    kl="bound", ranked=True, at_budget=f"{_D}.cbs:cbs_at_budget"))
register(DecoderSpec(
    "eft", f"{_D}.eft:eft", "EFT / proxy tuning: base + beta (tuned - untuned) logits, "
    "same vocabulary", EFTParams, needs=(LogitsBackend,), guide="pair",
    kl="exact"))
register(DecoderSpec(
    "dlf", f"{_D}.dlf:dlf", "Dynamic Logit Fusion: EFT with the experts' strengths chosen "
    "at every token to match their own KL shift, same vocabulary", DLFParams,
    needs=(LogitsBackend,), guide="pair", kl="exact"))
register(DecoderSpec(
    "nudging", f"{_D}.nudging:nudging", "Nudging: the base writes; where its top-1 token "
    "probability is below gamma the small tuned model writes the next word",
    NudgingParams, needs=(TopLogprobsBackend,), guide="pair"))
register(DecoderSpec(
    "wsd", f"{_D}.wsd:wsd", "Weak-to-Strong Decoding: the small tuned model drafts the "
    "opening; the base takes over where its confidence in the draft reaches threshold",
    WSDParams, needs=(TokenScoringBackend,), guide="pair"))

register(DecoderSpec(
    "pruned_bon", f"{_D}.pruned_bon:pruned_bon", "early-pruned Best-of-N (Speculative "
    "Rejection): the guide drops the worst partial candidates every few tokens",
    PrunedBoNParams, rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
    at_budget=f"{_D}.pruned_bon:pruned_at_budget"))
register(DecoderSpec(
    "treebon", f"{_D}.treebon:treebon", "TreeBoN: a tree of doubling segments; each layer keeps "
    "the best partial responses and branches them", TreeBoNParams,
    rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
    at_budget=f"{_D}.treebon:treebon_at_budget"))
register(DecoderSpec(
    "particles", f"{_D}.particles:particles", "particle filtering: P partial responses "
    "resampled in proportion to exp(guide increment / tau)", ParticleParams,
    rows_per_prompt=lambda p: p.particles, ranked=True,
    at_budget=f"{_D}.particles:particles_at_budget"))

register(DecoderSpec(
    "mcts", f"{_D}.mcts:mcts", "Monte Carlo tree search over base chunks (PUCT), valued by "
    "the guide per token", MCTSParams,
    rows_per_prompt=lambda p: p.k, ranked=True, at_budget=f"{_D}.mcts:mcts_at_budget"))

register(DecoderSpec(
    "qalign", f"{_D}.qalign:qalign", "QAlign / QUEST: Metropolis-Hastings chains over whole "
    "base responses, targeting base * exp(guide / beta)", QAlignParams,
    rows_per_prompt=lambda p: p.chains, ranked=True,
    at_budget=f"{_D}.qalign:qalign_at_budget"))

__all__ = ["DECODERS", "DecoderSpec", "decoders", "default_method", "get_decoder", "register",
           "unregister"]

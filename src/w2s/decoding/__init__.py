"""Decoders, looked up by name in one registry (:mod:`w2s.decoding.registry`). Each is a plain
function ``decoder(backend, guide, prompts, <method params>, sampling) -> list[Result]``.

The built-in decoders are registered by name and imported on first use (their modules import
torch; listing them for ``--help`` or a config check does not need it)."""

from __future__ import annotations

import sys
import types
from typing import Any

from w2s.decoding.registry import (
    DECODERS,
    DecoderSpec,
    decoders,
    default_method,
    get_decoder,
    lazy,
    register,
    unregister,
)
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

_HOME = {
    "sample": "sampling",
    "best_of_n": "best_of_n",
    "cbs": "beam",
    "eft": "eft",
    "dlf": "multi_guide",
    "nudging": "nudging",
    "pruned_bon": "pruned_bon",
    "treebon": "treebon",
    "particle_filter": "particles",
    "mcts": "mcts",
    "bon_at_budget": "best_of_n",
    "cbs_at_budget": "beam",
    "pruned_at_budget": "pruned_bon",
    "treebon_at_budget": "treebon",
    "particles_at_budget": "particles",
    "mcts_at_budget": "mcts",
    "eft_logprobs": "eft",
}
"""Each decoder function (and budget rule) and the module under ``w2s.decoding`` it lives in."""
_lazy = {name: lazy(f"w2s.decoding.{module}:{name}") for name, module in _HOME.items()}


def __getattr__(name: str) -> Any:
    """``from w2s.decoding import cbs`` and friends: the real function, imported now."""
    if name in _HOME:
        fn = _lazy[name].resolve()
        globals()[name] = fn  # found directly from now on
        return fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing ``w2s.decoding.best_of_n`` (the module) sets the package's ``best_of_n`` to
    it; the package keeps naming the function instead, as it did when it imported every
    decoder up front."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


register(DecoderSpec(
    "sample", _lazy["sample"], "plain sampling from the base (temperature, top-p, "
    "top-k, stop strings)", guide="optional", kl="exact"))
register(DecoderSpec(
    "bon", _lazy["best_of_n"], "Best-of-N: N base samples, the guide picks the best",
    BestOfNParams, rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
    at_budget=_lazy["bon_at_budget"]))
register(DecoderSpec(
    "cbs", _lazy["cbs"], "weak-to-strong search: chunk-level beam search (W, K, L) "
    "scored by the guide", SearchParams, rows_per_prompt=lambda p: p.max_rows(),
    kl="bound", ranked=True, at_budget=_lazy["cbs_at_budget"]))
register(DecoderSpec(
    "eft", _lazy["eft"], "EFT / proxy tuning: base + beta (tuned - untuned) logits, "
    "same vocabulary", EFTParams, needs=(LogitsBackend,), guide="pair",
    kl="exact"))
register(DecoderSpec(
    "dlf", _lazy["dlf"], "Dynamic Logit Fusion: EFT with the experts' strengths chosen "
    "at every token to match their own KL shift, same vocabulary", DLFParams,
    needs=(LogitsBackend,), guide="pair", kl="exact"))
register(DecoderSpec(
    "nudging", _lazy["nudging"], "Nudging: the base writes; where its top-1 token "
    "probability is below gamma the small tuned model writes the next word",
    NudgingParams, needs=(TopLogprobsBackend,), guide="pair"))

register(DecoderSpec(
    "pruned_bon", _lazy["pruned_bon"], "early-pruned Best-of-N (Speculative "
    "Rejection): the guide drops the worst partial candidates every few tokens",
    PrunedBoNParams, rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
    at_budget=_lazy["pruned_at_budget"]))
register(DecoderSpec(
    "treebon", _lazy["treebon"], "TreeBoN: a tree of doubling segments; each layer keeps "
    "the best partial responses and branches them", TreeBoNParams,
    rows_per_prompt=lambda p: p.n, kl="bound", ranked=True,
    at_budget=_lazy["treebon_at_budget"]))
register(DecoderSpec(
    "particles", _lazy["particle_filter"], "particle filtering: P partial responses "
    "resampled in proportion to exp(guide increment / tau)", ParticleParams,
    rows_per_prompt=lambda p: p.particles, ranked=True,
    at_budget=_lazy["particles_at_budget"]))

register(DecoderSpec(
    "mcts", _lazy["mcts"], "Monte Carlo tree search over base chunks (PUCT), valued by "
    "the guide per token", MCTSParams,
    rows_per_prompt=lambda p: p.k, ranked=True, at_budget=_lazy["mcts_at_budget"]))

__all__ = ["DECODERS", "DecoderSpec", "best_of_n", "cbs", "decoders", "default_method", "dlf",
           "eft", "eft_logprobs", "get_decoder", "mcts", "nudging", "particle_filter",
           "pruned_bon", "register", "sample", "treebon", "unregister"]

"""w2s: weak-to-strong test-time alignment.

Steer a large frozen language model (the *base*) with a small *tuned* model and the small
*untuned* model it was tuned from, by searching over the base's samples::

    import w2s
    base = w2s.HFModel.load("path/to/base")
    guide = w2s.PairGuide.load("path/to/tuned", "path/to/untuned")
    [result] = w2s.cbs(base, guide, ["The movie was"], w2s.SearchParams(w=4, k=4, l=5))
    print(result.text, result.score)

Names are imported on first use (PEP 562), so ``import w2s`` and the CLI's ``--help`` do not pay
for torch and transformers until a model or a decoder is needed.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "DECODERS": "w2s.decoding",
    "DecoderSpec": "w2s.decoding",
    "best_of_n": "w2s.decoding.bon:bon",  # its earlier name
    "bon": "w2s.decoding.bon",
    "cbs": "w2s.decoding.cbs",
    "decoders": "w2s.decoding",
    "dlf": "w2s.decoding.dlf",
    "eft": "w2s.decoding.eft",
    "mcts": "w2s.decoding.mcts",
    "nudging": "w2s.decoding.nudging",
    "particle_filter": "w2s.decoding.particles:particles",  # its earlier name
    "particles": "w2s.decoding.particles",
    "pruned_bon": "w2s.decoding.pruned_bon",
    "qalign": "w2s.decoding.qalign",
    "register": "w2s.decoding",
    "sample": "w2s.decoding.sample",
    "treebon": "w2s.decoding.treebon",
    "wsd": "w2s.decoding.wsd",
    "tracing": "w2s.decoding.trace",
    "FieldError": "w2s.errors",
    "W2SError": "w2s.errors",
    "Guide": "w2s.guides",
    "PairGuide": "w2s.guides",
    "RewardModelGuide": "w2s.guides",
    "WeightedGuide": "w2s.guides",
    "GuideKind": "w2s.guides.kinds",
    "register_guide_kind": "w2s.guides.kinds",
    "GuideRef": "w2s.guides.spec",
    "Backend": "w2s.models",
    "HFModel": "w2s.models",
    "LogitsBackend": "w2s.models",
    "OpenAIBackend": "w2s.models",
    "SearchBackend": "w2s.models",
    "BestOfNParams": "w2s.params",
    "DLFParams": "w2s.params",
    "EFTParams": "w2s.params",
    "MCTSParams": "w2s.params",
    "NudgingParams": "w2s.params",
    "ParticleParams": "w2s.params",
    "PrunedBoNParams": "w2s.params",
    "QAlignParams": "w2s.params",
    "SamplingParams": "w2s.params",
    "SearchParams": "w2s.params",
    "TreeBoNParams": "w2s.params",
    "WSDParams": "w2s.params",
    "BaseRef": "w2s.request",
    "Request": "w2s.request",
    "Loader": "w2s.request",
    "Resolver": "w2s.request",  # its earlier name
    "parse_request": "w2s.request",
    "Candidate": "w2s.result",
    "Cost": "w2s.result",
    "Result": "w2s.result",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:  # "module" (the same name there) or "module:attribute"
        module, _, attr = _WHERE[name].partition(":")
        value = getattr(importlib.import_module(module), attr or name)
    elif not name.startswith("_") and importlib.util.find_spec(f"w2s.{name}") is not None:
        value = importlib.import_module(f"w2s.{name}")  # a subpackage: w2s.zoo, w2s.request, ...
    else:
        raise AttributeError(f"module 'w2s' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from w2s.decoding import DECODERS, DecoderSpec, decoders, register
    from w2s.decoding.bon import bon
    from w2s.decoding.bon import bon as best_of_n
    from w2s.decoding.cbs import cbs
    from w2s.decoding.dlf import dlf
    from w2s.decoding.eft import eft
    from w2s.decoding.mcts import mcts
    from w2s.decoding.nudging import nudging
    from w2s.decoding.particles import particles
    from w2s.decoding.particles import particles as particle_filter
    from w2s.decoding.pruned_bon import pruned_bon
    from w2s.decoding.qalign import qalign
    from w2s.decoding.sample import sample
    from w2s.decoding.trace import tracing
    from w2s.decoding.treebon import treebon
    from w2s.decoding.wsd import wsd
    from w2s.errors import FieldError, W2SError
    from w2s.guides import Guide, PairGuide, RewardModelGuide, WeightedGuide
    from w2s.guides.kinds import GuideKind, register_guide_kind
    from w2s.guides.spec import GuideRef
    from w2s.models import Backend, HFModel, LogitsBackend, OpenAIBackend, SearchBackend
    from w2s.params import (
        BestOfNParams,
        DLFParams,
        EFTParams,
        MCTSParams,
        NudgingParams,
        ParticleParams,
        PrunedBoNParams,
        QAlignParams,
        SamplingParams,
        SearchParams,
        TreeBoNParams,
        WSDParams,
    )
    from w2s.request import BaseRef, Loader, Request, Resolver, parse_request
    from w2s.result import Candidate, Cost, Result


__all__ = [
    "DECODERS",
    "Backend",
    "BestOfNParams",
    "Candidate",
    "Cost",
    "DecoderSpec",
    "BaseRef",
    "DLFParams",
    "EFTParams",
    "FieldError",
    "Guide",
    "GuideKind",
    "GuideRef",
    "HFModel",
    "LogitsBackend",
    "MCTSParams",
    "NudgingParams",
    "ParticleParams",
    "PrunedBoNParams",
    "QAlignParams",
    "OpenAIBackend",
    "PairGuide",
    "Request",
    "Loader",
    "Resolver",
    "Result",
    "RewardModelGuide",
    "SamplingParams",
    "SearchBackend",
    "SearchParams",
    "TreeBoNParams",
    "W2SError",
    "WSDParams",
    "WeightedGuide",
    "__version__",
    "best_of_n",
    "bon",
    "cbs",
    "decoders",
    "dlf",
    "eft",
    "mcts",
    "nudging",
    "parse_request",
    "particle_filter",
    "particles",
    "pruned_bon",
    "qalign",
    "register",
    "register_guide_kind",
    "sample",
    "tracing",
    "treebon",
    "wsd",
]

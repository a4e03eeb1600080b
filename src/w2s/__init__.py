"""w2s: weak-to-strong test-time alignment.

Steer a large frozen language model (the *base*) with a small *tuned* model and the small
*untuned* model it was tuned from, by searching over the base's samples::

    import w2s
    base = w2s.HFModel.load("path/to/base")
    guide = w2s.PairGuide.load("path/to/tuned", "path/to/untuned")
    [result] = w2s.cbs(base, guide, ["The movie was"], w2s.SearchParams(w=4, k=4, l=5))
    print(result.text, result.score)
"""

from w2s.decoding import (
    DECODERS,
    DecoderSpec,
    best_of_n,
    cbs,
    decoders,
    dlf,
    eft,
    mcts,
    nudging,
    particle_filter,
    pruned_bon,
    register,
    sample,
    treebon,
)
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
    SamplingParams,
    SearchParams,
    TreeBoNParams,
)
from w2s.request import BaseRef, Request, Resolver, parse_request
from w2s.result import Candidate, Cost, Result

__version__ = "0.1.0"

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
    "OpenAIBackend",
    "PairGuide",
    "Request",
    "Resolver",
    "Result",
    "RewardModelGuide",
    "SamplingParams",
    "SearchBackend",
    "SearchParams",
    "TreeBoNParams",
    "W2SError",
    "WeightedGuide",
    "__version__",
    "best_of_n",
    "cbs",
    "decoders",
    "dlf",
    "eft",
    "mcts",
    "nudging",
    "parse_request",
    "particle_filter",
    "pruned_bon",
    "register",
    "register_guide_kind",
    "sample",
    "treebon",
]

"""Guides: things that score a (partial or complete) response to a prompt.

The central guide is the tuned/untuned **pair** (:mod:`w2s.guides.pair`); a **reward model**
scores text with a sequence-classification head (:mod:`w2s.guides.reward_model`); an
**autoregressive reward model** scores it by its own log-likelihood (:mod:`w2s.guides.arm`); guides
combine with ``+`` and scalar ``*`` into a weighted sum (:mod:`w2s.guides.base`).
"""

from w2s.guides.arm import ARMGuide
from w2s.guides.base import Guide, ScoringSession, WeightedGuide, WeightedSession
from w2s.guides.pair import PairGuide, PairSession
from w2s.guides.reward_model import RewardModelGuide

__all__ = ["ARMGuide", "Guide", "PairGuide", "PairSession", "RewardModelGuide", "ScoringSession",
           "WeightedGuide", "WeightedSession"]

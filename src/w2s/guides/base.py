"""What a guide is: ``score(prompts, responses) -> (B,)``, higher is better, and its
per-search scoring session; guides combine with ``+`` and scalar ``*`` into a weighted sum.

Guides hold no per-request state, so one guide can serve concurrent requests; the state of one
search lives in its :class:`ScoringSession`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from w2s.errors import W2SError


class ScoringSession:
    """Scores a search's candidates round after round (one session per decode call).

    Each candidate has a key (any hashable) and a parent key; the roots are the prompts' empty
    responses. This default re-scores every candidate's whole text; a guide that can do better
    (the pair: only the new tokens, from a KV cache) overrides :meth:`Guide.session`. Sessions
    hold the per-request state, so guides themselves stay stateless values.
    """

    def __init__(self, guide: Guide, prompts: Sequence[str], roots: Sequence[Any]) -> None:
        self.guide, self.prompts = guide, list(prompts)

    def score(self, owners: Sequence[int], parents: Sequence[Any], keys: Sequence[Any],
              texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        """Scores ``(B,)`` of candidates ``keys`` (children of ``parents``, for prompts
        ``owners``) with response ``texts``, and the number of tokens the guide processed."""
        return self.guide.score_with_cost([self.prompts[i] for i in owners], texts, ended)

    def keep(self, keys: Sequence[Any]) -> None:
        """Only these candidates will have children; forget the others."""


class Guide:
    """Base class: ``score(prompts, responses) -> (B,)`` float tensor, higher is better."""

    def session(self, prompts: Sequence[str], roots: Sequence[Any]) -> ScoringSession:
        """A scoring session for one search over ``prompts`` (root keys: empty responses)."""
        return ScoringSession(self, prompts, roots)

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              ended: Sequence[bool] | None = None) -> torch.Tensor:
        """Scores ``(B,)``. ``ended[i]`` marks a complete response (it ended by EOS or a stop
        string): language-model guides then also score the end of the sequence."""
        return self.score_with_cost(prompts, responses, ended)[0]

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        """Scores ``(B,)`` and the number of response tokens the guide's models processed."""
        raise NotImplementedError

    def __add__(self, other: Guide) -> WeightedGuide:
        if not isinstance(other, Guide):
            return NotImplemented
        return WeightedGuide(_terms(self) + _terms(other))

    def __mul__(self, weight: float) -> WeightedGuide:
        if not isinstance(weight, (int, float)):
            return NotImplemented
        return WeightedGuide([(w * float(weight), g) for w, g in _terms(self)])

    __rmul__ = __mul__


def _terms(g: Guide) -> list[tuple[float, Guide]]:
    return list(g.terms) if isinstance(g, WeightedGuide) else [(1.0, g)]


class WeightedGuide(Guide):
    """A weighted sum of guides: ``sum_i w_i * guide_i``."""

    def __init__(self, terms: Sequence[tuple[float, Guide]]) -> None:
        if not terms:
            raise W2SError("a weighted guide needs at least one term")
        self.terms = [(float(w), g) for w, g in terms]

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        total = torch.zeros(len(prompts), dtype=torch.float32)
        tokens = 0
        for w, g in self.terms:
            s, n = g.score_with_cost(prompts, responses, ended)
            total += w * s.float()
            tokens += n
        return total, tokens

    def session(self, prompts: Sequence[str], roots: Sequence[Any]) -> ScoringSession:
        return WeightedSession(self, prompts, roots)


class WeightedSession(ScoringSession):
    """One session per term; the score is the weighted sum of theirs."""

    def __init__(self, guide: WeightedGuide, prompts: Sequence[str], roots: Sequence[Any]) -> None:
        super().__init__(guide, prompts, roots)
        self.parts = [(w, g.session(prompts, roots)) for w, g in guide.terms]

    def score(self, owners: Sequence[int], parents: Sequence[Any], keys: Sequence[Any],
              texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        total, tokens = torch.zeros(len(keys), dtype=torch.float32), 0
        for w, sess in self.parts:
            s, n = sess.score(owners, parents, keys, texts, ended)
            total += w * s.float()
            tokens += n
        return total, tokens

    def keep(self, keys: Sequence[Any]) -> None:
        for _, sess in self.parts:
            sess.keep(keys)

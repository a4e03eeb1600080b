"""What a guide is: ``score(prompts, responses) -> (B,)``, higher is better, and its
per-search scoring session; guides combine with ``+`` and scalar ``*`` into a weighted sum.

Guides hold no per-request state, so one guide can serve concurrent requests; the state of one
search lives in its :class:`ScoringSession`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from w2s.errors import W2SError


class ScoringSession:
    """Scores one search's candidates round after round (one session per decode call).

    Candidates are rows with explicit indices: row ``i`` starts as prompt ``i``'s empty
    response. :meth:`reindex` makes new row ``j`` a copy of old row ``rows[j]`` (expansion and
    selection in one call, made by the search state that owns the rows); :meth:`score` then
    extends every row to its new response text. This default re-scores whole texts; a guide
    that can do better (the pair: only the new tokens, from a KV cache) overrides
    :meth:`Guide.session`. Sessions hold the per-request state, so guides stay stateless values.
    """

    def __init__(self, guide: Guide, prompts: Sequence[str]) -> None:
        self.guide, self.prompts = guide, list(prompts)
        self.owners = list(range(len(self.prompts)))  # row -> prompt index

    def reindex(self, rows: Sequence[int]) -> None:
        """New row ``j`` = old row ``rows[j]``."""
        self.owners = [self.owners[r] for r in rows]

    def score(self, texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        """Row ``j``'s response is now ``texts[j]`` (it extends the row's earlier text, except
        where a stop string cut it): scores ``(rows,)`` and the tokens the guide processed."""
        return self.guide.score_with_cost([self.prompts[i] for i in self.owners], texts, ended)


class Guide:
    """Base class: ``score(prompts, responses) -> (B,)`` float tensor, higher is better."""

    def session(self, prompts: Sequence[str]) -> ScoringSession:
        """A scoring session for one search over ``prompts`` (row ``i``: prompt ``i``)."""
        return ScoringSession(self, prompts)

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

    def session(self, prompts: Sequence[str]) -> ScoringSession:
        return WeightedSession(self, prompts)


class WeightedSession(ScoringSession):
    """One session per term; the score is the weighted sum of theirs."""

    def __init__(self, guide: WeightedGuide, prompts: Sequence[str]) -> None:
        super().__init__(guide, prompts)
        self.parts = [(w, g.session(prompts)) for w, g in guide.terms]

    def reindex(self, rows: Sequence[int]) -> None:
        super().reindex(rows)
        for _, sess in self.parts:
            sess.reindex(rows)

    def score(self, texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        total, tokens = torch.zeros(len(texts), dtype=torch.float32), 0
        for w, sess in self.parts:
            s, n = sess.score(texts, ended)
            total += w * s.float()
            tokens += n
        return total, tokens

"""What a guide is: ``score(prompts, responses) -> (B,)``, higher is better, and its
per-search scoring session; guides combine with ``+`` and scalar ``*`` into a weighted sum.

Guides hold no per-request state, so one guide can serve concurrent requests; the state of one
search lives in its :class:`ScoringSession`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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

    normalize: str = "raw"
    """How a sum puts its terms on one scale (:class:`WeightedGuide`); one guide is raw."""

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

    def check_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> None:
        """Refuse, before any work, prompts this guide's models cannot take with
        ``max_new_tokens`` more (a guide may have a shorter context than the base)."""

    def lengths(self, responses: Sequence[str], ended: Sequence[bool] | None
                ) -> torch.Tensor | None:
        """``(B,)`` response lengths in this guide's own tokens when its score is a sum over
        them (per-token normalisation), else None."""
        return None

    # What a guide is made of, declared, so that decoders, the server and the request checks
    # ask the guide instead of testing its class.
    def parts(self) -> list[tuple[float, Guide]]:
        """The weighted terms this guide sums: itself with weight 1, unless it is a sum."""
        return [(1.0, self)]

    def expert(self) -> tuple[Any, Any | None] | None:
        """``(lm, reference lm)`` when the score is a per-token log-likelihood ratio a
        token-level method can step (a pair: tuned and untuned; an autoregressive reward LM:
        itself and None); None for guides that only score text (reward models)."""
        return None

    def n_params(self) -> int:
        """Parameters one scored token (a unit of ``guide_tokens``) passes through, for FLOP
        estimates; 0 when unknown."""
        return 0

    def writer(self) -> Any | None:
        """A small language model that can write in the base's place (Nudging's small tuned
        model), or None."""
        return None

    def reweighted(self, weights: Sequence[float]) -> WeightedGuide:
        """The same terms (no model is loaded) with new weights, one per :meth:`parts`."""
        terms = self.parts()
        if len(weights) != len(terms):
            raise W2SError(f"weights: this guide has {len(terms)} term(s); give as many, got "
                           f"{len(weights)}")
        return WeightedGuide([(float(w), g) for w, (_, g) in zip(weights, terms)],
                             self.normalize)

    def __add__(self, other: Guide) -> WeightedGuide:
        if not isinstance(other, Guide):
            return NotImplemented
        return WeightedGuide(_terms(self) + _terms(other))

    def __mul__(self, weight: float) -> WeightedGuide:
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            return NotImplemented
        if not math.isfinite(weight):
            raise W2SError(f"a guide's weight must be a finite number, got {weight!r}")
        return WeightedGuide([(w * float(weight), g) for w, g in _terms(self)])

    __rmul__ = __mul__


def _terms(g: Guide) -> list[tuple[float, Guide]]:
    return g.parts()


NORMALIZATIONS = ("raw", "per_token", "zscore")
"""How a weighted guide puts its terms on one scale before weighing them."""


class WeightedGuide(Guide):
    """A weighted sum of guides: ``sum_i w_i * norm(guide_i)``.

    ``normalize`` (one scale for terms that have none in common, e.g. a pair's log-ratio sum
    next to a reward model's logit):

    - ``raw``: the terms' scores as they are;
    - ``per_token``: a term that sums over response tokens (a pair) is divided by the
      response's length in that term's own tokens; others (a reward model) stay raw;
    - ``zscore``: each term is standardised over the candidates of one prompt scored
      together (one search round, or Best-of-N's N), so a term's weight is its share of the
      ranking whatever its spread; a prompt with one candidate (or equal scores) gets 0.

    Set it last (``(0.7 * a + 0.3 * b).normalized("zscore")``): ``+`` and ``*`` give ``raw``.
    """

    def __init__(self, terms: Sequence[tuple[float, Guide]], normalize: str = "raw") -> None:
        if not terms:
            raise W2SError("a weighted guide needs at least one term")
        if normalize not in NORMALIZATIONS:
            raise W2SError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got "
                           f"{normalize!r}")
        for i, (w, g) in enumerate(terms):
            if (not isinstance(w, (int, float)) or isinstance(w, bool)
                    or not math.isfinite(w)):
                raise W2SError(f"weights[{i}] must be a finite number, got {w!r}")
            if not isinstance(g, Guide):
                raise W2SError(f"term {i} must be a w2s Guide, got {type(g).__name__}")
        self.terms = [(float(w), g) for w, g in terms]
        self.normalize = normalize

    def check_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> None:
        for _, g in self.terms:
            g.check_prompts(prompts, max_new_tokens)

    def parts(self) -> list[tuple[float, Guide]]:
        return list(self.terms)

    def n_params(self) -> int:
        """The terms' mean (an estimate: their tokens are counted together)."""
        return round(sum(g.n_params() for _, g in self.terms) / len(self.terms))

    def normalized(self, normalize: str) -> WeightedGuide:
        return WeightedGuide(self.terms, normalize)

    def combine(self, scores: Sequence[torch.Tensor], groups: Sequence[object],
                texts: Sequence[str], ended: Sequence[bool] | None) -> torch.Tensor:
        """``sum_i w_i * norm(scores_i)``; ``groups[j]`` names row ``j``'s prompt."""
        total = torch.zeros(len(texts), dtype=torch.float64)
        for (w, g), s in zip(self.terms, scores):
            s = s.double()
            if self.normalize == "per_token":
                n = g.lengths(texts, ended)
                if n is not None:
                    s = s / n.double().clamp(min=1)
            elif self.normalize == "zscore":
                s = zscore(s, groups)
            total += w * s
        return total.float()

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        parts = [g.score_with_cost(prompts, responses, ended) for _, g in self.terms]
        return (self.combine([s for s, _ in parts], prompts, responses, ended),
                sum(n for _, n in parts))

    def session(self, prompts: Sequence[str]) -> ScoringSession:
        return WeightedSession(self, prompts)


def zscore(s: torch.Tensor, groups: Sequence[object]) -> torch.Tensor:
    """``s`` standardised within each group (population std); 0 where a group has no spread."""
    out = torch.zeros_like(s)
    index: dict[object, list[int]] = {}
    for j, g in enumerate(groups):
        index.setdefault(g, []).append(j)
    for rows in index.values():
        x = s[rows]
        sd = x.std(unbiased=False) if len(rows) > 1 else torch.zeros((), dtype=s.dtype)
        out[rows] = (x - x.mean()) / sd if float(sd) > 0 else torch.zeros_like(x)
    return out


class WeightedSession(ScoringSession):
    """One session per term; the score is the weighted sum of theirs."""

    def __init__(self, guide: WeightedGuide, prompts: Sequence[str]) -> None:
        super().__init__(guide, prompts)
        self.weighted = guide
        self.parts = [(w, g.session(prompts)) for w, g in guide.terms]

    def reindex(self, rows: Sequence[int]) -> None:
        super().reindex(rows)
        for _, sess in self.parts:
            sess.reindex(rows)

    def score(self, texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        parts = [sess.score(texts, ended) for _, sess in self.parts]
        return (self.weighted.combine([s for s, _ in parts], self.owners, texts, ended),
                sum(n for _, n in parts))

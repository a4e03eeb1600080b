"""Named gold scorers: lexicon-based scorers (sentiment, objectivity) independent of every
model in the zoo."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from w2s.errors import W2SError


@functools.lru_cache(maxsize=1)
def _vader():  # noqa: ANN202
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise W2SError("the sentiment gold scorer needs vaderSentiment: "
                       "pip install 'w2s[demo]'") from None
    return SentimentIntensityAnalyzer()


def vader(texts: Sequence[str]) -> list[float]:
    """Gold reward: VADER compound score in [-1, 1] (higher = more positive)."""
    a = _vader()
    return [float(a.polarity_scores(t)["compound"]) for t in texts]


def textblob(texts: Sequence[str]) -> list[float]:
    """Second scorer: TextBlob (pattern lexicon) polarity in [-1, 1]."""
    try:
        from textblob import TextBlob
    except ImportError:
        raise W2SError("the second sentiment scorer needs textblob: "
                       "pip install 'w2s[demo]'") from None
    return [float(TextBlob(t).sentiment.polarity) for t in texts]


def objectivity(texts: Sequence[str]) -> list[float]:
    """A second objective: 1 - TextBlob subjectivity, in [0, 1] (higher = more factual, fewer
    opinion words). It pulls against positive sentiment, whose words are subjective."""
    try:
        from textblob import TextBlob
    except ImportError:
        raise W2SError("the objectivity scorer needs textblob: pip install 'w2s[demo]'") from None
    return [1.0 - float(TextBlob(t).sentiment.subjectivity) for t in texts]


GOLD_SCORERS = {"vader": vader, "textblob": textblob, "objectivity": objectivity}

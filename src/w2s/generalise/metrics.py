"""What a weak-to-strong run is judged by, against ground truth on test.

- accuracy, ROC AUC (scikit-learn's) and expected calibration error: beyond accuracy, whether
  a student's confidence means anything;
- **PGR** = (acc_student - acc_weak) / (acc_ceiling - acc_weak) (Burns et al. 2023), with a
  bootstrap interval that resamples *test items and training seeds together*: both are
  sources of chance, and every model of a draw is scored on the same resampled items, so the
  ratio's numerator and denominator move together as they should;
- **the deception split**: a model's accuracy on the test items the weak supervisor gets
  right, and on those it gets wrong. A student that imitates its supervisor is wrong where it
  is wrong (low accuracy on the second part); one that generalised is right there too. The
  ceiling's accuracy on each part is the reference (the wrong part is harder for everyone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(((p >= 0.5) == (y >= 0.5)).mean())


def roc_auc(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y >= 0.5, p))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the positive class: items binned by ``p`` into ``bins``
    equal-width bins, ``sum_b (n_b / N) |mean(y in b) - mean(p in b)|``."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(float(y[sel].mean()) - float(p[sel].mean()))
    return total


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"accuracy": accuracy(p, y), "auc": roc_auc(p, y), "ece": ece(p, y)}


@dataclass(frozen=True)
class Draws:
    """Bootstrap draws: ``seeds`` (B, S) how often each training seed is drawn, ``items``
    (B, N) how often each test item is; every statistic of a report uses the same draws."""

    seeds: np.ndarray
    items: np.ndarray

    @classmethod
    def make(cls, n_seeds: int, n_items: int, draws: int, seed: int = 0) -> Draws:
        rng = np.random.default_rng(seed)
        s = np.stack([np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds)
                      for _ in range(draws)])
        i = np.stack([np.bincount(rng.integers(0, n_items, n_items), minlength=n_items)
                      for _ in range(draws)]).astype(np.float64)
        return cls(s.astype(np.float64), i)

    def mean(self, x: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """Each draw's weighted mean of ``x`` (S, N), over the cells ``where`` (S, N) marks."""
        w = np.ones_like(x) if where is None else where.astype(np.float64)
        num = np.einsum("bs,sn,bn->b", self.seeds, x * w, self.items)
        den = np.einsum("bs,sn,bn->b", self.seeds, w, self.items)
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / den


def interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    d = draws[np.isfinite(draws)]
    if len(d) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def estimate(point: float, draws: np.ndarray, level: float) -> dict[str, float]:
    """A statistic with its bootstrap standard error and percentile interval."""
    d = draws[np.isfinite(draws)]
    lo, hi = interval(draws, level)
    se = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    return {"value": point, "se": se, "low": lo, "high": hi}


def pgr_table(correct: Mapping[str, np.ndarray], students: Sequence[str], draws: Draws,
              level: float, baseline: str | None = None) -> dict[str, dict]:
    """PGR of each student, the gap it is measured on, and each student against ``baseline``.

    ``correct[name]`` is (S, N): 1 where the model of training seed s gets test item n right;
    it holds ``weak``, ``ceiling`` and the students."""
    acc = {k: float(v.mean()) for k, v in correct.items()}
    boot = {k: draws.mean(v) for k, v in correct.items()}
    gap_draws = boot["ceiling"] - boot["weak"]
    gap = estimate(acc["ceiling"] - acc["weak"], gap_draws, level)
    gap["z"] = _z(gap["value"], gap["se"])
    out: dict[str, dict] = {"gap": gap, "students": {}}
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in students:
            pgr_point = _ratio(acc[s] - acc["weak"], acc["ceiling"] - acc["weak"])
            row = {"accuracy": acc[s],
                   "pgr": estimate(pgr_point, (boot[s] - boot["weak"]) / gap_draws, level)}
            if baseline is not None and s != baseline:
                d = estimate(acc[s] - acc[baseline], boot[s] - boot[baseline], level)
                d["z"] = _z(d["value"], d["se"])
                row[f"minus_{baseline}"] = d
            out["students"][s] = row
    return out


def _z(value: float, se: float) -> float:
    """How many standard errors ``value`` is from 0 (0 for 0; infinite for a sure nonzero)."""
    if se > 0:
        return value / se
    return 0.0 if value == 0 else float("inf")


def _ratio(num: float, den: float) -> float:
    """``num / den``; undefined (NaN) when the gap is zero."""
    return num / den if den != 0 else float("nan")


def deception_split(correct: Mapping[str, np.ndarray], models: Sequence[str], draws: Draws,
                    level: float) -> dict[str, dict]:
    """Each model's accuracy on the test items its seed's weak supervisor gets right, and on
    those it gets wrong (with intervals). With two classes, a model's error rate on the
    second part is how often it repeats the weak supervisor's mistake."""
    right = correct["weak"].astype(bool)
    out = {"weak_right_share": float(right.mean())}
    for m in models:
        c = correct[m]
        row = {}
        for part, mask in (("weak_right", right), ("weak_wrong", ~right)):
            point = float(c[mask].mean()) if mask.any() else float("nan")
            row[part] = estimate(point, draws.mean(c, mask), level)
        out[m] = row
    return out

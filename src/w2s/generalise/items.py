"""From labelled texts to the items a model is trained and tested on, in disjoint splits.

- **binary**: an item is one text; its class is ``rating > threshold`` (or its 0/1 label).
  With a ``margin``, ratings closer than it to the threshold are left out (the raters did not
  agree enough for a class); with ``balance`` (the default), the larger class is subsampled
  to the smaller one's size, so that a constant guess scores 50 %.
- **pairwise**: an item is a pair of texts of one split; its class is "the first is rated above
  the second", drawn only where the two ratings differ by at least ``margin``. Each pair's
  order is a coin flip, so the classes are balanced. A model that scores pairs this way is a
  reward model (Bradley-Terry).

Splits are made of texts, never of pairs, so no text of test is ever trained on; they are
drawn once from ``split_seed`` (or read from the user's ``split_column``), the same for every
training seed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from w2s.errors import W2SError
from w2s.generalise.config import SPLITS, GeneraliseConfig
from w2s.generalise.sources import Labelled


@dataclass(frozen=True)
class Split:
    """One split's items: text indices (``b`` too, for pairs) and their 0/1 ground truth."""

    a: np.ndarray
    y: np.ndarray
    b: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Items:
    texts: list[str]
    """Every text any split uses (the rows of each model's feature table)."""
    form: str
    splits: dict[str, Split]

    def digest(self) -> str:
        """Names these exact texts and splits (feature caches and results are tied to it)."""
        h = hashlib.sha256(json.dumps([self.form, self.texts]).encode())
        for s in SPLITS:
            sp = self.splits[s]
            for arr in (sp.a, sp.y, sp.b):
                h.update(b"|" if arr is None else np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        parts = [f"{s} {len(self.splits[s]):,} ({self.splits[s].y.mean():.0%} positive)"
                 for s in SPLITS]
        unit = "pairs" if self.form == "pairwise" else "texts"
        return f"{unit}: " + ", ".join(parts)


def build_items(data: Labelled, cfg: GeneraliseConfig) -> Items:
    """The splits ``cfg`` asks for; a set too small for them, or of one class, is one line."""
    values = np.asarray(data.values, dtype=np.float64)
    if cfg.form == "binary":
        if data.kind == "label" and cfg.margin > 0:
            raise W2SError("margin applies to ratings; this data has 0/1 labels (set margin: 0)")
        keep = np.flatnonzero(np.abs(values - data.threshold) >= max(cfg.margin, 1e-12))
        labels = (values > data.threshold).astype(np.float64)
        _both_classes(labels[keep], data.name + (f" (after the margin of {cfg.margin:g})"
                                                 if cfg.margin else ""))
        if cfg.balance:
            keep = _balanced(keep, labels, np.random.default_rng([cfg.split_seed, 99]))
    else:
        keep = np.arange(len(values))
    groups = _split_texts(data, keep, cfg)
    splits: dict[str, Split] = {}
    for k, name in enumerate(SPLITS):
        idx = groups[name]
        if cfg.form == "binary":
            splits[name] = Split(idx, labels[idx])
        else:
            splits[name] = _pairs(idx, values, getattr(cfg.pairs, name), cfg.margin,
                                  np.random.default_rng([cfg.split_seed, k]), name)
        _both_classes(splits[name].y, f"split {name}")
    used = sorted(set(np.concatenate([np.concatenate([s.a, s.b if s.b is not None else s.a])
                                      for s in splits.values()]).tolist()))
    remap = {old: new for new, old in enumerate(used)}
    texts = [data.texts[i] for i in used]

    def re(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else np.array([remap[int(i)] for i in arr], dtype=np.int64)

    return Items(texts, cfg.form, {n: Split(re(s.a), s.y, re(s.b))  # type: ignore[arg-type]
                                   for n, s in splits.items()})


def _balanced(keep: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As many of each class as the smaller class has, the larger one subsampled."""
    pos, neg = keep[labels[keep] == 1], keep[labels[keep] == 0]
    n = min(len(pos), len(neg))
    return np.sort(np.concatenate([rng.choice(pos, n, replace=False),
                                   rng.choice(neg, n, replace=False)]))


def _both_classes(y: np.ndarray, what: str) -> None:
    if len(y) == 0:
        raise W2SError(f"{what} has no items")
    if y.min() == y.max():
        cls = "positive" if y[0] else "negative"
        raise W2SError(f"{what} has only {cls} items: a classifier needs both classes")


def _split_texts(data: Labelled, keep: np.ndarray, cfg: GeneraliseConfig
                 ) -> dict[str, np.ndarray]:
    """Text indices of each split: the user's (``split_column``) or a seeded draw."""
    if data.splits is not None:
        return {s: np.array([i for i in keep if data.splits[i] == s], dtype=np.int64)
                for s in SPLITS}
    n = len(keep)
    sizes = [getattr(cfg.splits, s) for s in SPLITS]
    counts = [int(x * n) for x in sizes] if all(x < 1 for x in sizes) else \
        [int(x) for x in sizes]  # fractions round down: they never ask for more than n
    if sum(counts) > n:
        raise W2SError(f"the splits ask for {sum(counts):,} texts ({', '.join(f'{s} {c:,}' for s, c in zip(SPLITS, counts))}) "
                       f"but {data.name} has {n:,}" + (f" after the margin of {cfg.margin:g}"
                                                       if cfg.margin and cfg.form == "binary"
                                                       else "")
                       + "; ask for fewer")
    for s, c in zip(SPLITS, counts):
        if c < 2:
            raise W2SError(f"split {s} would hold {c} texts of {n:,}; give it more")
    order = keep[np.random.default_rng(cfg.split_seed).permutation(n)]
    out, lo = {}, 0
    for s, c in zip(SPLITS, counts):
        out[s] = np.sort(order[lo: lo + c])
        lo += c
    return out


def _pairs(idx: np.ndarray, values: np.ndarray, want: int, margin: float,
           rng: np.random.Generator, name: str) -> Split:
    """``want`` distinct pairs of texts of one split rated at least ``margin`` apart, each in
    random order; the class is ``value(a) > value(b)``."""
    if len(idx) < 2:
        raise W2SError(f"split {name} has {len(idx)} texts: too few to pair")
    v = values[idx]
    got: dict[tuple[int, int], None] = {}
    for _ in range(50):
        need = want - len(got)
        if need <= 0:
            break
        i = rng.integers(0, len(idx), size=4 * need + 16)
        j = rng.integers(0, len(idx), size=4 * need + 16)
        ok = (i != j) & (np.abs(v[i] - v[j]) >= max(margin, 1e-12))
        for x, y in zip(i[ok].tolist(), j[ok].tolist()):
            got.setdefault((min(x, y), max(x, y)), None)
            if len(got) == want:
                break
    if len(got) < want:
        raise W2SError(f"split {name} yields {len(got):,} distinct pairs rated at least "
                       f"{margin:g} apart, fewer than the {want:,} asked (pairs.{name}); ask "
                       "for fewer pairs or a smaller margin")
    pairs = np.array(list(got), dtype=np.int64)
    flip = rng.random(len(pairs)) < 0.5
    a = np.where(flip, pairs[:, 1], pairs[:, 0])
    b = np.where(flip, pairs[:, 0], pairs[:, 1])
    return Split(idx[a], (values[idx[a]] > values[idx[b]]).astype(np.float64), idx[b])

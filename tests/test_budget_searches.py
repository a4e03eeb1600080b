"""Searches at equal compute: early-pruned Best-of-N (Speculative Rejection) and particle
filtering, each against the formula in its module and its special cases, token for token.

- pruned Best-of-N with no checkpoint is Best-of-N; with checkpoints its survivors are
  Best-of-N's samples of the same slots, the counts kept are ceil((1 - prune) * count);
- particle filtering with equal weights (tau -> infinity) never resamples and is Best-of-P
  (and plain sampling of P responses); systematic resampling is unbiased and each count is
  the floor or ceiling of P w_i, with the seeded uniforms the decoder uses;
- neither spends more base tokens than N (or P) full responses, whatever the knobs;
- both run on a text-only backend (what an engine offers) with the same answers as one that
  reports token ids, and refuse bad knobs in one line naming the knob.
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import CountGuide, ScriptedBackend

import w2s
from w2s import (
    BestOfNParams,
    MCTSParams,
    ParticleParams,
    PrunedBoNParams,
    SamplingParams,
    TreeBoNParams,
    W2SError,
)
from w2s.decoding.common import Entry
from w2s.decoding.mcts import Node, backup, priors, puct, select
from w2s.decoding.particles import RESAMPLE_SLOT, ess, systematic
from w2s.decoding.pruned_bon import kept
from w2s.errors import FieldError
from w2s.models.base import Request
from w2s.request import parse_request
from w2s.rng import prompt_key, stream_keys, uniforms

PROMPTS = ["The movie was", "I thought the plot"]


def _same(a: w2s.Result, b: w2s.Result, exact_scores: bool = True) -> None:
    assert (a.text, a.token_ids, a.finished) == (b.text, b.token_ids, b.finished)
    assert [(c.text, c.token_ids) for c in a.candidates] == \
        [(c.text, c.token_ids) for c in b.candidates]
    if exact_scores:
        assert [c.score for c in a.candidates] == [c.score for c in b.candidates]
    else:  # scored chunk by chunk (incrementally) rather than once: float rounding
        assert [c.score for c in a.candidates] == pytest.approx(
            [c.score for c in b.candidates], abs=1e-4)


# ------------------------------------------------------------------ pruned Best-of-N
@pytest.mark.parametrize("count,prune,want", [(8, 0.5, 4), (5, 0.5, 3), (3, 0.25, 3),
                                              (1, 0.9, 1), (10, 0.3, 7), (4, 0.75, 1),
                                              (2, 0.99, 1)])
def test_a_checkpoint_keeps_the_ceiling_of_the_unpruned_share(count, prune, want):
    assert kept(count, prune) == want


def test_pruned_bon_without_a_checkpoint_is_best_of_n_token_for_token(base, pair):
    sp = SamplingParams(max_new_tokens=12, seed=3)
    want = w2s.bon(base, pair, PROMPTS, BestOfNParams(6), sp, return_all=True)
    got = w2s.pruned_bon(base, pair, PROMPTS, PrunedBoNParams(n=6, every=12), sp,
                         return_all=True)
    for a, b in zip(got, want):
        _same(a, b)
        assert a.cost.base_tokens == b.cost.base_tokens
        assert a.stats["kl_bound"] == pytest.approx(math.log(6))


@pytest.mark.parametrize("models", ["tiny", "ending"])
def test_pruned_bon_survivors_are_best_of_n_samples_of_their_slots(models, request):
    b, g = (request.getfixturevalue(x) for x in (("base", "pair") if models == "tiny"
                                                  else ("ebase", "epair")))
    sp = SamplingParams(max_new_tokens=16, seed=11)
    n, prune, every = 8, 0.5, 4
    samples = w2s.sample(b, None, PROMPTS, sp, n=n)
    full = w2s.bon(b, g, PROMPTS, BestOfNParams(n), sp, return_all=True)
    got = w2s.pruned_bon(b, g, PROMPTS, PrunedBoNParams(n=n, prune=prune, every=every),
                         sp, return_all=True)
    for r, s, f in zip(got, samples, full):
        by_text = {c.text: c.token_ids for c in s.candidates}
        for c in r.candidates:  # each survivor is the Best-of-N sample of its own slot
            assert by_text[c.text] == c.token_ids
        assert r.cost.base_tokens <= f.cost.base_tokens
        if models == "tiny":  # its samples rarely end early: pruning saves tokens
            assert r.cost.base_tokens < f.cost.base_tokens
        assert [c.score for c in r.candidates] == sorted((c.score for c in r.candidates),
                                                         reverse=True)
        assert 1 <= len(r.candidates) <= n


def test_pruned_bon_keeps_the_best_partial_candidates_at_each_checkpoint():
    """On a scripted backend with a guide that counts a letter, the checkpoint keeps exactly
    the top ceil((1 - prune) N) partial responses by that count."""
    sp = SamplingParams(max_new_tokens=6, seed=2, ignore_eos=True)
    first = w2s.sample(ScriptedBackend(), None, ["p"], SamplingParams(max_new_tokens=3, seed=2,
                                                                     ignore_eos=True), n=8)[0]
    partial = sorted(((CountGuide().score(["p"], [c.text])[0].item(), j)
                      for j, c in enumerate(first.candidates)), key=lambda x: -x[0])
    keep = {j for _, j in partial[:kept(8, 0.5)]}
    full = w2s.sample(ScriptedBackend(), None, ["p"], sp, n=8)[0]
    got = w2s.pruned_bon(ScriptedBackend(), CountGuide(), ["p"],
                         PrunedBoNParams(n=8, prune=0.5, every=3), sp, return_all=True)[0]
    kept_texts = {full.candidates[j].text for j in keep}
    assert {c.text for c in got.candidates} == kept_texts
    assert got.cost.base_tokens == 8 * 3 + len(keep) * 3


# ------------------------------------------------------------------ particle filtering
def test_particles_with_equal_weights_are_best_of_p_and_plain_sampling(base, pair):
    sp = SamplingParams(max_new_tokens=12, seed=5)
    knob = ParticleParams(particles=6, chunk=4, tau=1e12)
    got = w2s.particles(base, pair, PROMPTS, knob, sp, return_all=True)
    bon = w2s.bon(base, pair, PROMPTS, BestOfNParams(6), sp, return_all=True)
    plain = w2s.sample(base, None, PROMPTS, sp, n=6)
    for r, b, s in zip(got, bon, plain):
        _same(r, b, exact_scores=False)
        assert r.stats["resamples"] == 0
        assert sorted(c.text for c in r.candidates) == sorted(c.text for c in s.candidates)
        assert r.cost.base_tokens == b.cost.base_tokens


def test_particles_follow_the_guide_and_resample(base, pair):
    sp = SamplingParams(max_new_tokens=16, seed=5)
    got = w2s.particles(base, pair, PROMPTS, ParticleParams(particles=8, chunk=4, tau=0.5),
                              sp, return_all=True)
    for r in got:
        assert r.stats["resamples"] >= 1
        assert r.cost.base_tokens <= 8 * 16
        want = pair.score([r.prompt] * len(r.candidates), [c.text for c in r.candidates],
                          [c.finished for c in r.candidates])
        assert [c.score for c in r.candidates] == pytest.approx(want.tolist(), abs=1e-3)
    again = w2s.particles(base, pair, PROMPTS, ParticleParams(particles=8, chunk=4,
                                                                    tau=0.5), sp)
    assert [r.text for r in again] == [r.text for r in got]  # seeded: runs repeat


@pytest.mark.parametrize("weights", [[1, 1, 1, 1], [0.7, 0.1, 0.1, 0.1], [5, 0, 3, 0, 2],
                                     [1e-9, 1, 1e-9], [0.5, 0.25, 0.125, 0.125, 0, 0, 0, 0]])
def test_systematic_resampling_counts_are_floor_or_ceiling_and_unbiased(weights):
    p, total = len(weights), sum(weights)
    target = [p * w / total for w in weights]
    m = 2000
    mean = [0.0] * p
    for k in range(m):
        picks = systematic(weights, (k + 0.5) / m)
        assert picks == sorted(picks) and len(picks) == p
        for i in range(p):
            count = picks.count(i)
            assert math.floor(target[i] + 1e-9) <= count <= math.ceil(target[i] - 1e-9)
            mean[i] += count / m
    assert mean == pytest.approx(target, abs=p / m)  # E[count_i] = P w_i


def test_the_decoders_resampling_uniforms_give_unbiased_particle_frequencies():
    """The seeded uniforms the filter draws (slot RESAMPLE_SLOT, one per prompt and step) are
    uniform enough: over 4000 seeds, each particle's mean count is P w_i within 4 standard
    errors."""
    weights = [0.55, 0.3, 0.1, 0.05]
    p, seeds = len(weights), 4000
    keys = torch.tensor([prompt_key(s, "p") for s in range(seeds)], dtype=torch.long)
    u0 = uniforms(stream_keys(keys, torch.full_like(keys, RESAMPLE_SLOT)),
                  torch.full_like(keys, 1)).tolist()
    counts = torch.tensor([[systematic(weights, u).count(i) for i in range(p)] for u in u0],
                          dtype=torch.float64)
    mean, se = counts.mean(0), counts.std(0) / math.sqrt(seeds)
    for i in range(p):
        assert abs(float(mean[i]) - p * weights[i]) <= 4 * float(se[i]) + 1e-9


def test_effective_sample_size():
    assert ess([0.0, 0.0, 0.0, 0.0]) == pytest.approx(4)
    assert ess([0.0, -math.inf, -math.inf]) == pytest.approx(1)
    assert ess([math.log(3), 0.0]) == pytest.approx(16 / 10)
    assert ess([1000.0, 1000.0]) == pytest.approx(2)  # shifted: no overflow


# ------------------------------------------------------------------ TreeBoN
def test_treebon_with_one_branch_is_best_of_n_token_for_token(base, pair):
    sp = SamplingParams(max_new_tokens=14, seed=7)
    want = w2s.bon(base, pair, PROMPTS, BestOfNParams(6), sp, return_all=True)
    got = w2s.treebon(base, pair, PROMPTS, TreeBoNParams(n=6, branch=1, first=2), sp,
                      return_all=True)
    for a, b in zip(got, want):
        assert (a.text, a.token_ids) == (b.text, b.token_ids)
        assert sorted((c.text, tuple(c.token_ids)) for c in a.candidates) == \
            sorted((c.text, tuple(c.token_ids)) for c in b.candidates)
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.cost.base_tokens == b.cost.base_tokens
        assert a.stats["layers"] == 3  # segments 2, 4, 8 cover 14 tokens
        assert a.stats["kl_bound"] == pytest.approx(3 * math.log(6))


def test_treebon_keeps_the_best_and_its_plain_branch_is_plain_sampling(base, pair):
    sp = SamplingParams(max_new_tokens=12, seed=2)
    got = w2s.treebon(base, pair, PROMPTS, TreeBoNParams(n=8, branch=4, first=2), sp,
                      return_all=True)
    plain = w2s.sample(base, None, PROMPTS, sp, n=8)
    for r, s in zip(got, plain):
        by_text = {c.text: c.token_ids for c in s.candidates}
        for c in r.candidates:  # a response that is a plain sample is that sample, exactly
            if c.text in by_text:
                assert by_text[c.text] == c.token_ids
        assert r.cost.base_tokens <= 8 * 12
        want = pair.score([r.prompt] * len(r.candidates), [c.text for c in r.candidates],
                          [c.finished for c in r.candidates])
        assert [c.score for c in r.candidates] == pytest.approx(want.tolist(), abs=1e-3)
        assert r.candidates[0].score == max(c.score for c in r.candidates)


# ------------------------------------------------------------------ MCTS
def _tree() -> Node:
    """root -> a (2 visits, W 1.0), b (1 visit, W 0.9), c (0 visits); a -> a1 (1, W 0.2)."""
    root = Node(Entry([]), visits=3, total=1.9)
    a, b, c = (Node(Entry([1], tokens=1), root) for _ in range(3))
    a.visits, a.total, b.visits, b.total = 2, 1.0, 1, 0.9
    root.children = [a, b, c]
    a1 = Node(Entry([1, 2], tokens=2), a, visits=1, total=0.2)
    a.children = [a1]
    return root


def test_puct_picks_by_value_plus_prior_bonus_exactly():
    root = _tree()
    a, b, c = root.children
    # N(s) = 3, P = 1/3: a 0.5 + sqrt(3)/9 = 0.692, b 0.9 + sqrt(3)/6 = 1.189, c 0 + sqrt(3)/3
    assert puct(root, 1.0) is b
    assert puct(root, 0.0) is b
    assert puct(root, 10.0) is c  # exploration: 10 sqrt(3)/3 = 5.77 beats b's 0.9 + 2.89
    assert select(root, 0.0, max_new=8) is b  # b is not expanded: the leaf to expand


def test_the_prior_is_a_softmax_of_the_weighted_per_token_log_probabilities():
    root = _tree()
    a, b, c = root.children
    a.logp, b.logp, c.logp = -1.0, -2.0, -3.0
    assert priors(root, 0.0) == pytest.approx([1 / 3] * 3)
    z = math.exp(-1) + math.exp(-2) + math.exp(-3)
    assert priors(root, 1.0) == pytest.approx([math.exp(-1) / z, math.exp(-2) / z,
                                               math.exp(-3) / z])
    z2 = math.exp(-2) + math.exp(-4) + math.exp(-6)
    assert priors(root, 2.0) == pytest.approx([math.exp(-2) / z2, math.exp(-4) / z2,
                                               math.exp(-6) / z2])
    # c = 4: uniform, c wins (4 sqrt(3)/3 = 2.31 beats b's 0.9 + 4 sqrt(3)/6 = 2.05); with the
    # base's prior a 0.665 and c 0.090: a 0.5 + 4 * 0.665 sqrt(3)/3 = 2.04 beats b's
    # 0.9 + 4 * 0.245 sqrt(3)/2 = 1.75 and c's 4 * 0.090 sqrt(3) = 0.62
    assert puct(root, 4.0, 0.0) is c
    assert puct(root, 4.0, 1.0) is a
    assert select(root, 4.0, max_new=8, weight=1.0) is a.children[0]


def test_each_child_carries_its_chunk_log_probability_per_token(monkeypatch):
    m = importlib.import_module("w2s.decoding.mcts")  # the package's `mcts` is the function
    seen, real = [], m._expand

    def spy(*args, **kw):  # noqa: ANN002, ANN003
        kids = real(*args, **kw)
        seen.extend(ch for v in kids.values() for ch in v)
        return kids

    monkeypatch.setattr(m, "_expand", spy)
    w2s.mcts(ScriptedBackend(eos_weight=0.5), CountGuide(), ["p"],
             MCTSParams(expansions=1, k=3, l=6), SamplingParams(max_new_tokens=6, seed=2))
    p = torch.tensor([1.0] * 5 + [0.5])
    logp = (p / p.sum()).log()  # the scripted backend's next-token distribution
    assert len(seen) == 3
    for ch in seen:
        ids = ch.entry.ids
        assert ch.logp == pytest.approx(float(logp[ids].sum()) / len(ids))
    assert len({round(ch.logp, 9) for ch in seen}) > 1  # a prior that can tell them apart


def test_a_backend_without_log_probabilities_needs_a_uniform_prior():
    quiet = ScriptedBackend(logprobs=False)
    sp = SamplingParams(max_new_tokens=6, seed=2)
    with pytest.raises(W2SError, match="prior=1 needs the base's log-probabilities"):
        w2s.mcts(quiet, CountGuide(), ["p"], MCTSParams(2, 2, 3), sp)
    a = w2s.mcts(quiet, CountGuide(), ["p"], MCTSParams(2, 2, 3, prior=0.0), sp)
    b = w2s.mcts(ScriptedBackend(), CountGuide(), ["p"], MCTSParams(2, 2, 3, prior=0.0), sp)
    assert a[0].text == b[0].text


def test_the_in_process_log_probability_is_the_models_own_before_temperature(base):
    sp = SamplingParams(max_new_tokens=7, seed=5, temperature=0.7)
    reqs = [Request("The movie was", "", None, (0, 1, 2))]
    [conts] = base.complete(reqs, 7, sp)
    ids = [c.token_ids for c in conts]
    want = base.token_loglik(["The movie was"] * 3, ids)
    for c, w in zip(conts, want):
        assert c.logprob == pytest.approx(w, abs=1e-4)


def test_backup_adds_one_visit_and_the_value_to_the_whole_path():
    root = _tree()
    a = root.children[0]
    a1 = a.children[0]
    backup(a1, 0.6)
    assert (a1.visits, a1.total) == (2, pytest.approx(0.8))
    assert (a.visits, a.total, a.q) == (3, pytest.approx(1.6), pytest.approx(1.6 / 3))
    assert (root.visits, root.total) == (4, pytest.approx(2.5))
    assert root.children[1].visits == 1  # siblings untouched


def test_mcts_spends_its_budget_and_returns_ranked_finished_responses(base, pair):
    sp = SamplingParams(max_new_tokens=12, seed=3)
    knob = MCTSParams(expansions=5, k=3, l=4)
    got = w2s.mcts(base, pair, PROMPTS, knob, sp, return_all=True)
    for r in got:
        assert 0 < r.cost.base_tokens <= 5 * 3 * 4 + 12
        assert r.stats["nodes"] <= 1 + 5 * 3  # an expansion adds k nodes (none when finished)
        assert 5 <= r.stats["root_visits"] <= 5 * 3  # k per expansion, 1 per finished leaf
        assert all(c.finished or len(c.token_ids) == 12 for c in r.candidates)
        want = pair.score([r.prompt] * len(r.candidates), [c.text for c in r.candidates],
                          [c.finished for c in r.candidates])
        assert [c.score for c in r.candidates] == pytest.approx(want.tolist(), abs=1e-3)
        assert [c.score for c in r.candidates] == sorted((c.score for c in r.candidates),
                                                         reverse=True)
    again = w2s.mcts(base, pair, PROMPTS, knob, sp)
    assert [r.text for r in again] == [r.text for r in got]
    # its first expansion is plain sampling: the root's children are samples of slots 0..k-1
    first = w2s.mcts(base, pair, PROMPTS, MCTSParams(expansions=1, k=3, l=12), sp,
                     return_all=True)
    plain = w2s.sample(base, None, PROMPTS, sp, n=3)
    for r, s in zip(first, plain):
        assert sorted(c.text for c in r.candidates) == sorted(c.text for c in s.candidates)


# ------------------------------------------------------------------ budgets, backends, knobs
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 6), prune=st.floats(0.05, 0.95), every=st.integers(1, 9),
       chunk=st.integers(1, 9), tau=st.floats(0.05, 50), ess_=st.floats(0.05, 1.0),
       max_new=st.integers(1, 10), seed=st.integers(0, 50))
def test_budgets_are_never_exceeded(base, pair, n, prune, every, chunk, tau, ess_, max_new,
                                    seed):
    sp = SamplingParams(max_new_tokens=max_new, seed=seed)
    for r in w2s.pruned_bon(base, pair, ["the film"], PrunedBoNParams(n, prune, every), sp):
        assert 0 < r.cost.base_tokens <= n * max_new
    for r in w2s.particles(base, pair, ["the film"], ParticleParams(n, chunk, tau, ess_),
                                 sp):
        assert 0 < r.cost.base_tokens <= n * max_new
    branch = 1 + seed % n
    for r in w2s.treebon(base, pair, ["the film"], TreeBoNParams(n, branch, every), sp):
        assert 0 < r.cost.base_tokens <= n * max_new
    for r in w2s.mcts(base, pair, ["the film"], MCTSParams(n, 1 + seed % 4, chunk, tau), sp):
        assert 0 < r.cost.base_tokens <= n * (1 + seed % 4) * chunk + max_new


@pytest.mark.parametrize("run", [
    lambda b, g: w2s.pruned_bon(b, g, ["p", "q"], PrunedBoNParams(5, 0.5, 2),
                                SamplingParams(max_new_tokens=9, seed=4, stop=("ed",)),
                                return_all=True),
    lambda b, g: w2s.particles(b, g, ["p", "q"], ParticleParams(5, 2, 0.3),
                                     SamplingParams(max_new_tokens=9, seed=4, stop=("ed",)),
                                     return_all=True),
    lambda b, g: w2s.treebon(b, g, ["p", "q"], TreeBoNParams(6, 3, 2),
                             SamplingParams(max_new_tokens=9, seed=4, stop=("ed",)),
                             return_all=True),
    lambda b, g: w2s.mcts(b, g, ["p", "q"], MCTSParams(4, 3, 3),
                          SamplingParams(max_new_tokens=9, seed=4, stop=("ed",)),
                          return_all=True),
], ids=["pruned_bon", "particles", "treebon", "mcts"])
def test_text_only_backend_gives_the_same_answers(run):
    with_ids = run(ScriptedBackend(eos_weight=0.5), CountGuide())
    text_only = run(ScriptedBackend(eos_weight=0.5, ids=False), CountGuide())
    for a, b in zip(with_ids, text_only):
        assert [(c.text, c.score, c.finished) for c in a.candidates] == \
            [(c.text, c.score, c.finished) for c in b.candidates]
        assert a.cost.base_tokens == b.cost.base_tokens > 0


@pytest.mark.parametrize("knobs,field", [
    ({"method": "pruned_bon", "prune": 0}, "prune"),
    ({"method": "pruned_bon", "prune": 1}, "prune"),
    ({"method": "pruned_bon", "prune": math.nan}, "prune"),
    ({"method": "pruned_bon", "every": 0}, "every"),
    ({"method": "pruned_bon", "n": 0}, "n"),
    ({"method": "particles", "tau": 0}, "tau"),
    ({"method": "particles", "tau": -1.0}, "tau"),
    ({"method": "particles", "tau": math.inf}, "tau"),
    ({"method": "particles", "ess": 0}, "ess"),
    ({"method": "particles", "ess": 1.5}, "ess"),
    ({"method": "particles", "particles": 0}, "particles"),
    ({"method": "particles", "chunk": 0}, "chunk"),
    ({"method": "treebon", "branch": 0}, "branch"),
    ({"method": "treebon", "n": 4, "branch": 5}, "branch"),
    ({"method": "treebon", "first": 0}, "first"),
    ({"method": "treebon", "per_token": "yes"}, "per_token"),
    ({"method": "mcts", "expansions": 0}, "expansions"),
    ({"method": "mcts", "c": -1.0}, "c"),
    ({"method": "mcts", "c": math.inf}, "c"),
    ({"method": "mcts", "prior": -0.5}, "prior"),
    ({"method": "mcts", "prior": math.nan}, "prior"),
])
def test_bad_knobs_are_one_line_naming_the_knob(knobs, field):
    with pytest.raises(FieldError) as e:
        parse_request({**knobs, "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}})
    assert e.value.field == field and "\n" not in str(e.value)


def test_the_searches_need_a_guide(base):
    for fn, knob in ((w2s.pruned_bon, PrunedBoNParams()), (w2s.particles,
                                                            ParticleParams()),
                     (w2s.treebon, TreeBoNParams()), (w2s.mcts, MCTSParams())):
        with pytest.raises(W2SError, match="needs a guide"):
            fn(base, None, ["x"], knob)


# ------------------------------------------------------------------ budget-matched evaluation
def test_methods_are_sized_to_a_budget_exactly():
    from w2s.decoding.pruned_bon import worst_cost

    d = w2s.decoders()
    assert d["bon"].at_budget(BestOfNParams(3), 8, 50) == BestOfNParams(8)
    assert d["cbs"].at_budget(w2s.SearchParams(w=9, k=4, l=5), 16, 50) == \
        w2s.SearchParams(w=4, k=4, l=5)
    assert d["particles"].at_budget(ParticleParams(2, 6, 0.3, 0.4), 8, 50) == \
        ParticleParams(8, 6, 0.3, 0.4)
    assert d["treebon"].at_budget(TreeBoNParams(16, 4, 2), 2, 50) == TreeBoNParams(2, 2, 2)
    # MCTS: (b - 1) * max_new // (k * l) expansions: (4 - 1) * 50 // 32 = 4
    assert d["mcts"].at_budget(MCTSParams(9, 4, 8, 2.0), 4, 50) == MCTSParams(4, 4, 8, 2.0)
    # pruned Best-of-N, no early ends: 8 * 8 + 4 * 8 + 2 * 8 + 1 * 8 * 3 + 1 * 2 = 138 tokens
    assert worst_cost(PrunedBoNParams(8, 0.5, 8), 50) == 64 + 32 + 16 + 24 + 2
    sized = d["pruned_bon"].at_budget(PrunedBoNParams(2, 0.5, 8), 4, 50)
    assert worst_cost(sized, 50) <= 200 < worst_cost(PrunedBoNParams(sized.n + 1, 0.5, 8), 50)
    with pytest.raises(W2SError, match="k=4 candidates per entry cannot fit a budget of 2"):
        d["cbs"].at_budget(w2s.SearchParams(), 2, 50)
    with pytest.raises(W2SError, match="mcts: one expansion"):
        d["mcts"].at_budget(MCTSParams(k=4, l=8), 1, 50)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(b=st.integers(1, 6), max_new=st.integers(2, 10), seed=st.integers(0, 99),
       method=st.sampled_from(["bon", "pruned_bon", "particles", "treebon", "mcts", "cbs",
                               "qalign"]))
def test_a_method_sized_to_a_budget_spends_at_most_it(base, pair, b, max_new, seed, method):
    spec = w2s.decoders()[method]
    small = {"cbs": w2s.SearchParams(w=1, k=1, l=3), "mcts": MCTSParams(k=1, l=1)}
    knob = spec.at_budget(small.get(method, spec.make_params({})), b, max_new) \
        if (method not in ("mcts", "qalign") or b > 1) else None
    if knob is None:
        return
    [r] = spec.run(base, pair, ["the film"], knob, SamplingParams(max_new_tokens=max_new,
                                                                  seed=seed))
    assert 0 < r.cost.base_tokens <= b * max_new


def test_an_eval_config_expands_methods_over_its_budgets(tmp_path):
    from w2s.evaluate.config import parse_config

    data = {"task": "sentiment", "base": "zoo:base", "budgets": [2, 4],
            "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
            "sampling": {"max_new_tokens": 10},
            "methods": ["sample", "bon", {"method": "cbs", "k": 2}, "eft"]}
    cfg = parse_config(data, tmp_path / "b.yaml")
    assert [(m.label, m.budget) for m in cfg.methods] == [
        ("sample", None), ("bon@2x", 2), ("bon@4x", 4), ("cbs(k=2)@2x", 2),
        ("cbs(k=2)@4x", 4), ("eft", None)]
    assert [m.params for m in cfg.methods[1:5]] == [
        BestOfNParams(2), BestOfNParams(4), w2s.SearchParams(1, 2, 5), w2s.SearchParams(2, 2, 5)]
    without = parse_config({**data, "budgets": None}, tmp_path / "b.yaml")
    assert [m.hash for m in without.methods if m.method in ("sample", "eft")] == \
        [cfg.methods[0].hash, cfg.methods[-1].hash]  # unbudgeted methods keep their hashes
    for bad, msg in (([0], "budgets must be a list"), ([2, 2], "budgets repeat"),
                     ("4", "budgets must be a list")):
        with pytest.raises(W2SError, match=msg):
            parse_config({**data, "budgets": bad}, tmp_path / "b.yaml")
    with pytest.raises(W2SError, match=r"methods\[3\]: budget 2: cbs: k=4"):
        parse_config({**data, "methods": ["sample", "bon", "cbs"]}, tmp_path / "b.yaml")


def test_a_budget_keeps_every_knob_it_does_not_size():
    """at_budget changes only the knobs it sizes: each other knob, set off its default, is
    still there after sizing (a budget that rebuilt the knobs by hand dropped them)."""
    cases = {"bon": (BestOfNParams(3), {"n": 8}),
             "cbs": (w2s.SearchParams(w=1, k=2, l=3), {"w": 4}),
             "pruned_bon": (PrunedBoNParams(n=3, prune=0.25, every=3), {"n": 10}),
             "particles": (ParticleParams(particles=3, chunk=5, tau=0.3, ess=0.7),
                           {"particles": 8}),
             "treebon": (TreeBoNParams(n=6, branch=2, first=3, per_token=False), {"n": 8}),
             "mcts": (MCTSParams(expansions=2, k=3, l=2, c=0.5, prior=0.0),
                      {"expansions": (8 - 1) * 12 // (3 * 2)}),
             "qalign": (w2s.QAlignParams(steps=2, chains=3, beta=0.3), {"steps": 8 // 3 - 1})}
    assert set(cases) == {n for n, d in w2s.decoders().items() if d.at_budget}
    for method, (knob, sized) in cases.items():
        got = w2s.decoders()[method].at_budget(knob, 8, 12)
        assert got == dataclasses.replace(knob, **sized), method


def test_a_budget_never_changes_a_knob_the_config_fixed(tmp_path):
    """{method: bon, n: 64} at budget 2 used to run n = 2 labelled bon(n=64)@2x; a fixed knob
    the budget leaves as it is stays accepted."""
    from w2s.evaluate.config import parse_config

    def cfg(methods, budgets):  # noqa: ANN001, ANN202
        return parse_config({"task": "sentiment", "base": "zoo:base", "budgets": budgets,
                             "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
                             "sampling": {"max_new_tokens": 10}, "methods": methods},
                            tmp_path / "b.yaml")

    with pytest.raises(W2SError, match=r"^b.yaml: methods\[1\]: budget 2 sizes n to 2, but "
                       r"the config fixes n=64; leave n out"):
        cfg([{"method": "bon", "n": 64}], [2])
    with pytest.raises(W2SError, match=r"methods\[2\]: budget 2 sizes branch to 2, but the "
                       r"config fixes branch=4"):
        cfg(["bon", {"method": "treebon", "branch": 4}], [4, 2])
    with pytest.raises(W2SError, match=r"budget 4 sizes w to 2, but the config fixes w=1"):
        cfg([{"method": "cbs", "w": 1, "k": 2}], [2, 4])
    ok = cfg([{"method": "cbs", "w": 2, "k": 2}, {"method": "treebon", "branch": 4}], [5])
    assert [(m.label, m.params) for m in ok.methods] == [
        ("cbs(w=2,k=2)@5x", w2s.SearchParams(w=2, k=2, l=5)),
        ("treebon(branch=4)@5x", TreeBoNParams(n=5, branch=4))]


def test_the_budget_table_pairs_each_method_with_best_of_n_at_its_budget(tmp_path):
    from w2s.evaluate.budget import budget_markdown, budget_table
    from w2s.evaluate.budget_report import write_budget_report

    def row(method, name, b, p, s, g):  # noqa: ANN001, ANN202
        return {"method": method, "method_name": name, "budget": b, "prompt_index": p,
                "seed": s, "gold": {"vader": g}, "base_tokens": 10 * b}

    rows = [row("bon@2x", "bon", 2, p, s, 0.1 * p) for p in range(3) for s in range(2)]
    rows += [row("cbs@2x", "cbs", 2, p, s, 0.1 * p + 0.2 + 0.1 * s) for p in range(3)
             for s in range(2)]
    rows += [row("cbs@4x", "cbs", 4, p, 0, 0.5) for p in range(3)]
    t = budget_table(rows, "vader")
    assert t["budgets"] == [2, 4] and t["lines"] == ["bon", "cbs"]
    d = t["cells"]["cbs"][2]["vs_bon"]
    assert d["mean"] == pytest.approx(0.25) and d["se"] == pytest.approx(0.0, abs=1e-12)
    assert d["prompts"] == 3 and d["pairs"] == 6
    assert "vs_bon" not in t["cells"]["cbs"][4]  # no Best-of-N at 4x to pair with
    assert t["cells"]["bon"][2]["gold"][0] == pytest.approx(0.1)
    md = budget_markdown(t)
    assert "| cbs | +0.250 ± 0.000 | – |" in md
    paths = write_budget_report(rows, tmp_path, "vader", "t")
    assert [p.name for p in paths] == ["budget.md", "savings.md", "overopt.md",
                                       "gold_vs_budget.png", "gold_vs_spent.png", "overopt.png"]
    assert write_budget_report([{**r, "budget": None} for r in rows], tmp_path, "vader") == []


# ------------------------------------------------------------------ the compute axis
def test_flops_are_two_times_parameters_times_tokens_per_model(base, pair):
    sp = SamplingParams(max_new_tokens=8, seed=1)
    spec = w2s.decoders()["bon"]
    [r] = spec.run(base, pair, ["The movie was"], BestOfNParams(3), sp)
    n_base = sum(p.numel() for p in base.model.parameters())
    n_pair = round((sum(p.numel() for p in pair.tuned.model.parameters())
                    + sum(p.numel() for p in pair.untuned.model.parameters())) / 2)
    assert r.cost.base_read == len(base.encode_prompt("The movie was"))  # read once (KV cache)
    assert r.cost.flops == 2.0 * (n_base * (r.cost.base_tokens + r.cost.base_read)
                                  + n_pair * r.cost.guide_tokens)
    assert r.cost.flops > 0


def test_an_engine_re_reads_each_requests_prefix():
    """Without per-row state (an engine), each request reads its response so far again; a
    backend that cannot count the prompt adds only those (CBS W=1, K=2, L=2, 4 tokens: round 1
    reads nothing, round 2 one request of 2 tokens)."""
    sp = SamplingParams(max_new_tokens=4, seed=1, ignore_eos=True)
    [r] = w2s.cbs(ScriptedBackend(), CountGuide(), ["p"], w2s.SearchParams(1, 2, 2), sp)
    assert r.cost.base_read == 2 and r.cost.base_tokens == 8
    [r] = w2s.decoders()["cbs"].run(ScriptedBackend(), CountGuide(), ["p"],
                                    w2s.SearchParams(1, 2, 2), sp)
    assert r.cost.flops == 0.0  # sizes unknown: no estimate rather than a wrong one

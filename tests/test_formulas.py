"""Formulas at points where a wrong formula gives another value, against hand-computed numbers.

A bound tested only at W = K = 2 cannot tell W*K from W+K, and one tested only at N = 2 cannot
tell log N - (N-1)/N from many neighbours; a KL tested only as KL(p||p) = 0 and KL > 0 cannot
tell its direction. Each expectation here is written out by hand (plain floats, no w2s code).
"""

from __future__ import annotations

import math

import pytest
import reference
import torch
from scripted import ScriptedBackend

import w2s
from w2s import BestOfNParams, EFTParams, SamplingParams, SearchParams
from w2s.decoding.bon import bon_kl_bound
from w2s.decoding.cbs import selection_kl_bound
from w2s.logits import token_kl


# ------------------------------------------------------------------ Best-of-N's KL bound
@pytest.mark.parametrize("n,want", [
    (1, 0.0),
    (3, 1.0986122886681098 - 2 / 3),  # log 3 - 2/3
    (4, 1.3862943611198906 - 0.75),  # log 4 - 3/4
    (16, 2.772588722239781 - 15 / 16),
])
def test_best_of_n_bound_by_hand(n, want):
    assert bon_kl_bound(n) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("n", [3, 5])
def test_best_of_n_reports_its_bound(n):
    [r] = w2s.bon(ScriptedBackend(), _Longest(), ["p"], BestOfNParams(n=n),
                        SamplingParams(max_new_tokens=4, seed=1))
    assert r.stats == {"kl_bound": pytest.approx(math.log(n) - (n - 1) / n, abs=1e-12)}


# ------------------------------------------------------------------ CBS's selection bound
@pytest.mark.parametrize("rounds,w,k,want", [
    (1, 2, 3, 1.791759469228055),  # log 6 (W+K = 5 would give log 5 = 1.609)
    (3, 2, 3, 3 * 1.791759469228055),
    (2, 4, 1, 2 * 1.3862943611198906),  # log 4
    (5, 1, 1, 0.0),  # W = K = 1 is sampling: no selection, no KL
])
def test_selection_bound_by_hand(rounds, w, k, want):
    assert selection_kl_bound(rounds, w * k) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("w,k,l_,max_new,rounds", [(2, 3, 3, 7, 3), (3, 2, 2, 8, 4),
                                                   (1, 4, 5, 5, 1)])
def test_cbs_reports_rounds_and_bound(w, k, l_, max_new, rounds):
    backend = ScriptedBackend()
    [r] = w2s.cbs(backend, _Longest(), ["p"], SearchParams(w, k, l_),
                  SamplingParams(max_new_tokens=max_new, seed=0, ignore_eos=True))
    assert len(backend.calls) == rounds == r.stats["rounds"]
    assert r.stats["kl_bound"] == pytest.approx(rounds * math.log(w * k), abs=1e-12)


class _Longest(w2s.Guide):
    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
        return torch.tensor([float(len(r)) for r in responses]), 0


# ------------------------------------------------------------------ KL's direction
def test_token_kl_is_kl_of_the_fused_from_the_base():
    q = torch.tensor([[0.5, 0.5]], dtype=torch.float64).log()
    p = torch.tensor([[0.9, 0.1]], dtype=torch.float64).log()  # logits: any shift would do
    # KL(q || p) = 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1); the reverse, KL(p || q), is 0.3681
    want = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert token_kl(q, p + 3.0, 1.0).item() == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(0.5108256, abs=1e-6)
    reverse = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert token_kl(p, q, 1.0).item() == pytest.approx(reverse, abs=1e-12)


def test_token_kl_at_a_temperature_scales_both_sides():
    q_logits, p_logits, t = [0.0, 1.0, 3.0], [2.0, 0.5, 0.0], 0.5

    def softmax(xs: list[float]) -> list[float]:
        z = [math.exp(x / t) for x in xs]
        return [x / sum(z) for x in z]

    q, p = softmax(q_logits), softmax(p_logits)
    want = sum(a * math.log(a / b) for a, b in zip(q, p))
    got = token_kl(torch.tensor([q_logits]), torch.tensor([p_logits]), t).item()
    assert got == pytest.approx(want, rel=1e-12)
    assert token_kl(torch.tensor([q_logits]), torch.tensor([p_logits]), 0.0).tolist() == [0.0]


def test_eft_kl_against_an_independent_float64_reference(ebase, epair, ending_paths):
    """EFT's in-loop KL, recomputed from plain transformers forward passes in float64: the fused
    distribution, the temperature and the direction all written out again."""
    beta, temp, prompts = 1.5, 0.8, ["The movie was", "A"]
    sp = SamplingParams(max_new_tokens=8, temperature=temp, seed=3)
    for p, r in zip(prompts, w2s.eft(ebase, epair, prompts, EFTParams(beta), sp)):
        lb, lt, lu = (reference.next_token_logits(ending_paths[role], p, r.token_ids)
                      for role in ("base", "tuned", "untuned"))
        want = 0.0
        for t in range(len(r.token_ids)):  # position t predicts token t
            fused = (lb[t].log_softmax(-1) + beta * (lt[t].log_softmax(-1)
                                                     - lu[t].log_softmax(-1)))
            want += reference.kl_sum(fused.log_softmax(-1), lb[t], temp)
        assert want > 0.01
        assert r.stats["kl"] == pytest.approx(want, rel=1e-4)

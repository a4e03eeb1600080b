"""AdaSearch's Decay schedule (Quamar et al. 2025) as a preset of CBS's schedule: round r keeps
floor(w * decay^(r-1)) entries (at least 1) of k successors each, and a budget sizes w. Checked
exactly: the rounds and the sizing by hand, the base tokens a run spends (EOS ignored), an
eval config's budgets, and bad decays."""

from __future__ import annotations

import pytest

import w2s
from w2s import FieldError, SamplingParams, SearchParams, W2SError
from w2s.decoding.cbs import cbs_at_budget, search_tokens


def test_the_preset_rounds_decay_by_hand():
    assert SearchParams(w=12, schedule="adasearch").rounds() == [(12, 4), (6, 4), (3, 4), (1, 4)]
    # 12 * 0.7^r = 12, 8.4, 5.88, 4.12, 2.88, 2.02, 1.41 -> floors, then 1 repeats
    assert SearchParams(w=12, k=2, schedule="adasearch:0.7").rounds() == \
        [(12, 2), (8, 2), (5, 2), (4, 2), (2, 2), (2, 2), (1, 2)]
    # draws: W_1 K, then W_{r-1} K: the first two rounds draw the most (front-loaded)
    assert SearchParams(w=12, schedule="adasearch").draws() == [48, 48, 24, 12, 4]
    assert SearchParams(w=1, schedule="adasearch").rounds() == [(1, 4)]  # plain CBS(1, 4)
    assert SearchParams(w=12, schedule="adasearch").to_dict()["schedule"] == "adasearch"


def test_a_budget_sizes_the_first_width_by_hand():
    # budget 16 responses of 50 tokens = 800 base tokens, L = 5: 10 rounds.
    # w = 12: draws 48, 48, 24, 12, then 4 x 6 rounds = 156 chunks x 5 = 780 <= 800;
    # w = 13: 52, 52, 24 (6 x 4), 12, 4 x 6 = 164 chunks x 5 = 820 > 800
    sized = cbs_at_budget(SearchParams(schedule="adasearch", l=5), 16, 50)
    assert sized == SearchParams(w=12, k=4, l=5, schedule="adasearch")
    assert search_tokens(sized, 50) == 780
    assert search_tokens(SearchParams(w=13, schedule="adasearch", l=5), 50) == 820
    assert search_tokens(SearchParams(w=4, k=4, l=5), 50) == 800  # plain CBS at that budget
    # the first two of ten chunks get 96 of the 156 chunks (plain CBS: 2 of 10 rounds' worth)
    assert sum(sized.draws()[:2]) == 96
    # a last partial chunk counts what is left: 12 tokens, L = 5 -> chunks of 5, 5, 2
    assert search_tokens(SearchParams(w=2, k=2, l=5, schedule="adasearch"), 12) == \
        4 * 5 + 4 * 5 + 2 * 2
    with pytest.raises(W2SError, match=r"^cbs: k=4 candidates per entry cannot fit a budget of 3"):
        cbs_at_budget(SearchParams(schedule="adasearch"), 3, 50)
    with pytest.raises(W2SError, match="a budget sizes W; give w and k, not a schedule"):
        cbs_at_budget(SearchParams(schedule="8:4"), 16, 50)


@pytest.mark.parametrize("b, max_new, l, k", [(6, 20, 5, 4), (3, 11, 4, 2)])
def test_a_run_spends_what_the_schedule_says(base, pair, b, max_new, l, k):  # noqa: E741
    knob = w2s.decoders()["cbs"].at_budget(SearchParams(k=k, l=l, schedule="adasearch"), b,
                                           max_new)
    sp = SamplingParams(max_new_tokens=max_new, seed=5, ignore_eos=True)
    [r] = w2s.cbs(base, pair, ["the film"], knob, sp)
    assert r.cost.base_tokens == search_tokens(knob, max_new) <= b * max_new
    assert r.stats["rounds"] == -(-max_new // l)


def test_an_eval_config_sizes_the_preset_to_its_budgets(tmp_path):
    from w2s.evaluate.config import parse_config

    data = {"task": "sentiment", "base": "zoo:base", "budgets": [4, 16],
            "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
            "sampling": {"max_new_tokens": 50},
            "methods": [{"method": "cbs", "schedule": "adasearch", "l": 5}]}
    cfg = parse_config(data, tmp_path / "b.yaml")
    # budget 4: w = 3 -> draws 12, 12, 4 x 8 = 56 chunks x 5 = 280 > 200; w = 2 -> 8, 8, 4 x 8
    # = 48 x 5 = 240 > 200; w = 1 -> 4 x 10 x 5 = 200
    assert [m.params.w for m in cfg.methods] == [1, 12]
    assert [m.budget for m in cfg.methods] == [4, 16]


@pytest.mark.parametrize("schedule", ["adasearch:1", "adasearch:0", "adasearch:x",
                                      "adasearch:nan", "adasearch:-0.5"])
def test_bad_decays_are_one_line_naming_the_schedule(schedule):
    with pytest.raises(FieldError, match=r"^schedule must be adasearch or adasearch:DECAY with "
                                         r"DECAY in \(0, 1\)") as e:
        SearchParams(schedule=schedule)
    assert e.value.field == "schedule"
    with pytest.raises(FieldError, match="at most 64 rounds"):
        SearchParams(w=10**6, schedule="adasearch:0.99")

"""Compute saved at equal gold (evaluate/savings.py) and over-optimisation
(evaluate/overopt.py), on constructed rows whose answers are known by hand."""

from __future__ import annotations

import math

import pytest

from w2s.errors import W2SError
from w2s.evaluate.overopt import overopt_markdown, overopt_table
from w2s.evaluate.savings import cost_for_gold, savings_markdown, savings_table


def row(method, name, b, p, s, gold, tokens, guide=0.0, second=None, kl=None):  # noqa: ANN001, ANN201
    g = {"vader": gold, **({"textblob": second} if second is not None else {})}
    return {"method": method, "method_name": name, "budget": b, "prompt_index": p, "seed": s,
            "gold": g, "base_tokens": tokens, "flops": 2.0 * tokens, "wall_time_s": tokens / 100,
            "guide_score": guide, "kl": kl, "kl_kind": "bound" if kl is not None else "none"}


def test_the_cost_for_a_gold_is_read_off_the_curve_linearly_in_log_cost():
    curve = [(10.0, 0.0), (40.0, 1.0), (160.0, 2.0)]
    assert cost_for_gold(curve, 1.0) == (40.0, None)
    assert cost_for_gold(curve, 1.5)[0] == pytest.approx(80.0)  # halfway in log: sqrt(40*160)
    assert cost_for_gold(curve, 0.5)[0] == pytest.approx(20.0)
    assert cost_for_gold(curve, 3.0) == (160.0, "above")
    assert cost_for_gold(curve, -1.0) == (10.0, "below")
    # a dip in the curve: the first point that reaches the gold counts
    assert cost_for_gold([(10.0, 0.0), (20.0, 1.0), (40.0, 0.5), (80.0, 2.0)], 0.8)[0] \
        == pytest.approx(math.exp(math.log(10) + 0.8 * math.log(2)))


def _rows():
    rows = []
    for p in range(4):
        for s in range(2):
            rows += [row("bon@1x", "bon", 1, p, s, 0.0, 10),
                     row("bon@4x", "bon", 4, p, s, 1.0, 40),
                     row("bon@16x", "bon", 16, p, s, 2.0, 160),
                     row("cbs@2x", "cbs", 2, p, s, 1.5, 20),     # BoN needs 80: 4x saved
                     row("cbs@4x", "cbs", 4, p, s, 3.0, 40)]      # above the whole curve
    return rows


def test_the_saving_factor_is_best_of_ns_cost_over_the_methods_at_equal_gold():
    t = savings_table(_rows(), "vader", draws=50)
    assert t["bon"] == ["bon@1x", "bon@4x", "bon@16x"]
    c2, c4 = t["cells"]
    assert c2["label"] == "cbs@2x" and c2["base_tokens_factor"] == pytest.approx(4.0)
    assert c2["base_tokens_censored"] is None
    assert c2["flops_factor"] == pytest.approx(4.0) and c2["wall_time_s_factor"] \
        == pytest.approx(4.0)
    assert c2["base_tokens_interval"] == pytest.approx((4.0, 4.0))  # no spread, no width
    assert c4["base_tokens_factor"] == pytest.approx(4.0) and c4["base_tokens_censored"] \
        == "above"
    md = savings_markdown(t)
    assert "| cbs@2x | +1.500 | 20 | 80 | 4.00× [4.00, 4.00]" in md
    assert "| cbs@4x | +3.000 | 40 | > 160 | > 4.00×" in md
    # the headline: cbs@2x spends 20 <= 160 / 8 and is 0.5 below Best-of-16, with no spread
    h = t["headline"]
    assert h["reference"] == "bon@16x" and h["reference_tokens"] == 160
    assert [d["label"] for d in h["cheap"]] == ["cbs@2x"]
    assert h["cheap"][0]["mean"] == pytest.approx(-0.5)
    assert "cbs@2x (20 tokens): -0.500 ± 0.000" in md and "falls short of it" in md


def test_the_interval_resamples_prompts_and_widens_with_their_spread():
    rows = _rows()
    for r in rows:  # prompt 0's search is much better, the others' worse: the factor varies
        if r["method"] == "cbs@2x":
            r["gold"]["vader"] = 1.9 if r["prompt_index"] == 0 else 1.2
    t = savings_table(rows, "vader", draws=400)
    c = t["cells"][0]
    lo, hi = c["base_tokens_interval"]
    assert lo < c["base_tokens_factor"] < hi


def test_no_curve_no_savings():
    rows = [row("cbs@2x", "cbs", 2, 0, 0, 1.0, 20), row("bon@2x", "bon", 2, 0, 0, 1.0, 20)]
    t = savings_table(rows, "vader")
    assert t["cells"] == [] and "No Best-of-N curve" in savings_markdown(t)


def test_over_optimisation_is_a_fall_of_gold_while_the_guide_still_rises():
    rows = []
    for p in range(4):
        for s in range(2):
            wob = 0.01 * (p % 2)  # a little spread so the SE is not zero
            rows += [row("cbs@4x", "cbs", 4, p, s, 0.5, 40, guide=1.0, second=0.2, kl=2.0),
                     row("cbs@16x", "cbs", 16, p, s, 0.8, 160, guide=2.0, second=0.3 + wob,
                         kl=4.0),
                     row("cbs@64x", "cbs", 64, p, s, 0.6 + wob, 640, guide=3.0, second=0.4,
                         kl=6.0)]
    t = overopt_table(rows, ["vader", "textblob"])
    [line] = t["lines"]
    assert [pt["budget"] for pt in line["points"]] == [4, 16, 64]
    v, tb = line["peaks"]["vader"], line["peaks"]["textblob"]
    assert v["budget"] == 16 and v["after"]["mean"] == pytest.approx(-0.195)
    assert v["guide_rise"] == pytest.approx(1.0) and v["over"] is True
    assert tb["budget"] == 64 and "after" not in tb and tb["over"] is False
    md = overopt_markdown(t)
    assert "| cbs | 16× (+0.800) | -0.195 ± 0.003, guide +1.00 **over** | 64× (+0.400) | " \
           "(peaks at the largest budget) | 6.0 (bound) |" in md


def test_the_eval_report_writes_savings_and_overoptimisation(tmp_path):
    from w2s.evaluate.budget_report import write_budget_report

    paths = write_budget_report(_rows(), tmp_path, "vader", "t")
    assert [p.name for p in paths] == ["budget.md", "savings.md", "overopt.md",
                                       "gold_vs_budget.png", "gold_vs_spent.png", "overopt.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_a_method_entry_can_carry_its_own_budgets(tmp_path):
    """Best-of-N's reference curve over N = 1..64 beside searches at 4..64."""
    from w2s.evaluate.config import parse_config

    def cfg(methods):  # noqa: ANN001, ANN202
        return parse_config({"task": "sentiment", "base": "zoo:base", "budgets": [4, 8],
                             "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
                             "sampling": {"max_new_tokens": 10}, "methods": methods},
                            tmp_path / "b.yaml")

    c = cfg([{"method": "bon", "budgets": [1, 2, 4]}, {"method": "cbs", "k": 4, "l": 2}])
    assert [m.label for m in c.methods] == ["bon@1x", "bon@2x", "bon@4x", "cbs(k=4,l=2)@4x",
                                            "cbs(k=4,l=2)@8x"]
    same = cfg([{"method": "bon"}, {"method": "cbs", "k": 4, "l": 2}])
    assert c.methods[2].hash == same.methods[0].hash  # bon@4x is the same run either way
    with pytest.raises(W2SError, match=r"^b.yaml: methods\[1\]: budgets must be a list"):
        cfg([{"method": "bon", "budgets": [0]}])


@pytest.mark.parametrize("gold,verdict", [(2.5, "beats it"), (1.5, "falls short of it"),
                                          (None, "within 1.96 SE of it")])
def test_the_headline_says_beats_falls_short_or_within(gold, verdict):
    rows = _rows()
    for r in rows:
        if r["method"] == "cbs@2x":  # None: +-1 around Best-of-16's 2.0, by prompt: SE 0.58
            r["gold"]["vader"] = gold if gold is not None else (
                3.0 if r["prompt_index"] % 2 else 1.0)
    md = savings_markdown(savings_table(rows, "vader", draws=20))
    assert f"— {verdict}" in md.split("cbs@2x (20 tokens)")[1].splitlines()[0]

"""Multi-guide EFT and Dynamic Logit Fusion against their formulas (DESIGN.md, Methods 4):
fused probability vectors equal the formula; one expert of weight 1 is EFT token for token; a
shared untuned model is stepped once per token; DLF's strength matches the KL target where it is
known, is 0 for an expert that equals its untuned model, and clips at alpha_max."""

from __future__ import annotations

import math

import pytest
import torch

import w2s
from w2s import DLFParams, EFTParams, HFModel, PairGuide, SamplingParams, W2SError
from w2s.decoding.dlf import DLFRule, dlf_scale, expert_kl, tilted_kl
from w2s.decoding.experts import MultiGuideRule, experts_of
from w2s.decoding.token_level import fused_logprobs

T1, T2, U = object(), object(), object()  # stand-ins: the rules only need identities here


def logits(seed: int, b: int = 3, v: int = 7) -> torch.Tensor:
    return torch.randn(b, v, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_multi_guide_rule_is_the_formula_with_one_shared_untuned_model():
    rule = MultiGuideRule([(0.7, T1, U), (0.3, T2, U)], beta=1.5)
    assert [m for _, m in rule.models()] == [T1, U, T2]  # the shared untuned model once
    base, t1, u, t2 = logits(0), logits(1), logits(2), logits(3)
    got = fused_logprobs(rule, [base, t1, u, t2]).exp()
    ls = [x.log_softmax(-1) for x in (base, t1, u, t2)]
    want = (ls[0] + 1.5 * (0.7 * (ls[1] - ls[2]) + 0.3 * (ls[3] - ls[2]))).softmax(-1)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)  # the loop runs float32


def test_experts_come_from_a_pair_or_a_weighted_sum_of_pairs(pair):
    assert experts_of(pair, "eft") == [(1.0, pair.tuned, pair.untuned)]
    assert [w for w, _, _ in experts_of(0.25 * pair + 0.75 * pair, "eft")] == [0.25, 0.75]
    with pytest.raises(W2SError, match="must be >= 0"):
        experts_of(-1.0 * pair + pair, "eft")
    with pytest.raises(W2SError, match="tuned/untuned pairs"):
        experts_of(None, "dlf")


def test_one_expert_of_weight_one_is_eft_token_for_token(base, pair):
    s = SamplingParams(max_new_tokens=12, seed=3)
    prompts = ["The movie was", "I thought"]
    one = w2s.eft(base, pair, prompts, EFTParams(beta=1.3), s)
    multi = w2s.eft(base, 1.0 * pair, prompts, EFTParams(beta=1.3), s)
    assert [r.token_ids for r in multi] == [r.token_ids for r in one]
    assert [r.stats["kl"] for r in multi] == pytest.approx([r.stats["kl"] for r in one])


def test_a_shared_untuned_model_is_stepped_once_per_token(base, tiny_paths):
    untuned = HFModel.load(tiny_paths["untuned"])
    tuned_a, tuned_b = HFModel.load(tiny_paths["tuned"]), HFModel.load(tiny_paths["tuned"])
    calls = {"untuned": 0, "a": 0}
    for name, m in (("untuned", untuned), ("a", tuned_a)):
        step = m.step

        def counted(*a, _step=step, _name=name, **k):
            calls[_name] += 1
            return _step(*a, **k)
        m.step = counted
    guide = 0.5 * PairGuide(tuned_a, untuned) + 0.5 * PairGuide(tuned_b, untuned)
    w2s.eft(base, guide, ["The movie was"], EFTParams(), SamplingParams(seed=0, max_new_tokens=8,
                                                                         ignore_eos=True))
    assert calls["untuned"] == calls["a"] == 7  # one step per token after the first


def test_dlf_bisection_finds_the_strength_that_matches_the_kl():
    base, shift = logits(4).log_softmax(-1), logits(5)
    s_true = torch.tensor([0.0, 0.7, 1.9], dtype=torch.float64)
    target = tilted_kl(base, shift, s_true)
    s = dlf_scale(base, shift, target, s_max=2.0)
    torch.testing.assert_close(s, s_true, rtol=0, atol=1e-7)
    # a target beyond reach clips at s_max; a zero target is no shift at all
    far = dlf_scale(base, shift, target + 100.0, s_max=2.0)
    assert far.tolist() == [2.0, 2.0, 2.0]
    assert dlf_scale(base, shift, torch.zeros(3), s_max=2.0).tolist() == [0.0, 0.0, 0.0]


def test_the_kl_of_the_tilted_distribution_grows_with_the_strength():
    base, shift = logits(6).log_softmax(-1), logits(7)
    kls = [tilted_kl(base, shift, torch.full((3,), s, dtype=torch.float64))
           for s in (0.0, 0.5, 1.0, 2.0)]
    assert torch.all(kls[0] == 0)
    for a, b in zip(kls, kls[1:]):
        assert torch.all(b > a)


def test_dlf_rule_matches_the_mean_expert_kl_along_the_weights():
    rule = DLFRule([(1.0, T1, U), (0.5, T2, U)], alpha_max=5.0)
    u = logits(10).log_softmax(-1)  # experts near their untuned model, as tuned models are
    t1, t2 = (u + 0.5 * logits(9)).log_softmax(-1), (u + 0.5 * logits(11)).log_softmax(-1)
    base = logits(8).log_softmax(-1)
    fused = rule(base, [t1, u, t2])
    alpha = rule.alphas[-1]  # (B, 2), along the weights' direction
    torch.testing.assert_close(alpha[:, 1], alpha[:, 0] * 0.5)
    want = base + alpha[:, :1] * (t1 - u) + alpha[:, 1:] * (t2 - u)
    torch.testing.assert_close(fused.log_softmax(-1), want.log_softmax(-1))
    achieved = (fused.log_softmax(-1).exp() * (fused.log_softmax(-1) - base)).sum(-1)
    target = (expert_kl(t1, u) + expert_kl(t2, u)) / 2
    assert bool((alpha[:, 0] < 5.0).all())
    torch.testing.assert_close(achieved, target, rtol=0, atol=1e-8)


def test_dlf_with_an_expert_equal_to_its_untuned_model_is_base_sampling(base, tiny_paths):
    untuned = HFModel.load(tiny_paths["untuned"])
    same = PairGuide(untuned, untuned)
    s = SamplingParams(max_new_tokens=10, seed=1)
    got = w2s.dlf(base, same, ["The movie was", "It"], DLFParams(alpha_max=3.0), s)
    want = w2s.sample(base, None, ["The movie was", "It"], s)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]
    assert all(r.stats["alpha_mean"] == 0.0 and r.stats["kl"] == pytest.approx(0, abs=1e-9)
               for r in got)


def test_dlf_runs_with_the_zoo_pair_and_reports_its_strengths(base, pair):
    [r] = w2s.dlf(base, pair, ["The movie was"], DLFParams(alpha_max=1.5),
                  SamplingParams(max_new_tokens=10, seed=2))
    assert 0 <= r.stats["alpha_1"] <= 1.5 and r.stats["alpha_mean"] == r.stats["alpha_1"]
    assert r.stats["kl"] >= 0 and r.method == "dlf"


def test_dlf_params_are_checked():
    with pytest.raises(W2SError, match="alpha_max"):
        DLFParams(alpha_max=0)


def test_the_cli_takes_several_experts_and_their_weights(tiny_paths, base):
    import json

    from click.testing import CliRunner

    from w2s.cli import cli

    args = ["generate", "--base", tiny_paths["base"], "--tuned", tiny_paths["tuned"],
            "--tuned", tiny_paths["untuned"], "--untuned", tiny_paths["untuned"],
            "--weights", "0.6,0.4", "--method", "eft", "--beta", "2", "--prompt", "The movie",
            "--max-new-tokens", "8", "--seed", "4", "--json"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    untuned = HFModel.load(tiny_paths["untuned"])
    guide = (0.6 * PairGuide(HFModel.load(tiny_paths["tuned"]), untuned)
             + 0.4 * PairGuide(untuned, untuned))
    [ref] = w2s.eft(base, guide, ["The movie"], EFTParams(beta=2.0),
                    SamplingParams(max_new_tokens=8, seed=4))
    assert got["token_ids"] == ref.token_ids
    for extra, msg in ((["--weights", "1,x"], "--weights takes numbers"),
                       (["--weights", "1"], "weights: give 2 finite numbers")):
        bad = CliRunner().invoke(cli, args[:9] + extra + args[11:])
        assert bad.exit_code == 2 and msg in bad.output, bad.output


def test_one_untuned_model_per_tuned_one_or_one_for_all(tiny_paths):
    from w2s.guides.build import guide_from_spec

    loads = []

    def load(ref):
        loads.append(ref)
        return HFModel.load(tiny_paths[ref])

    g = guide_from_spec({"tuned": ["tuned", "base"], "untuned": "untuned",
                         "weights": [1, 2]}, load_lm=load)
    assert sorted(loads) == ["base", "tuned", "untuned"]  # the shared one loaded once
    assert [w for w, _ in g.terms] == [1.0, 2.0] and g.terms[0][1].untuned is g.terms[1][1].untuned
    with pytest.raises(W2SError, match="one per tuned model"):
        guide_from_spec({"tuned": ["tuned", "base"], "untuned": ["untuned"] * 3}, load_lm=load)


# ------------------------------------------------------------------ adaptive CBS budgets
def test_a_constant_schedule_is_plain_cbs_token_for_token(base, pair):
    s = SamplingParams(max_new_tokens=12, seed=9)
    plain = w2s.cbs(base, pair, ["The movie was", "It"], w2s.SearchParams(w=2, k=3, l=4), s)
    sched = w2s.cbs(base, pair, ["The movie was", "It"],
                    w2s.SearchParams(schedule="2:3", l=4), s)
    assert [r.token_ids for r in sched] == [r.token_ids for r in plain]
    assert [r.cost.base_tokens for r in sched] == [r.cost.base_tokens for r in plain]


def test_a_decaying_schedule_spends_its_budget_round_by_round(base, pair):
    s = SamplingParams(max_new_tokens=12, seed=2, ignore_eos=True)
    [r] = w2s.cbs(base, pair, ["The movie was"], w2s.SearchParams(schedule="4:4,2:2,1:2", l=4),
                  s)
    # round 1: 16 chunks of 4; round 2: 4 kept x 2; round 3: 2 kept x 2 -> (16 + 8 + 4) x 4
    assert r.cost.base_tokens == (16 + 8 + 4) * 4 and r.stats["rounds"] == 3
    p = w2s.SearchParams(schedule="4:4,2:2,1:2")
    assert p.rounds() == [(4, 4), (2, 2), (1, 2)] and p.max_rows() == 16
    assert "schedule" not in w2s.SearchParams().to_dict()  # old result hashes stay valid


def test_a_schedule_sets_the_memory_plan_and_the_kl_bound_round_by_round(base, pair):
    p = w2s.SearchParams(schedule="1:1,4:4")  # round 3 on: 4 parents x 4 = 16 rows
    assert p.draws() == [1, 4, 16] and p.max_rows() == 16
    assert w2s.decoders()["cbs"].rows_per_prompt(p) == 16
    assert w2s.SearchParams(w=3, k=5).draws() == [15]
    s = SamplingParams(max_new_tokens=12, seed=2, ignore_eos=True)
    [r] = w2s.cbs(base, pair, ["The movie was"], w2s.SearchParams(schedule="4:4,2:2,1:2", l=4),
                  s)
    # 3 rounds drawing 16, then 4 x 2, then 2 x 2 chunks per prefix at most
    assert r.stats["kl_bound"] == pytest.approx(math.log(16) + math.log(8) + math.log(4))
    [r] = w2s.cbs(base, pair, ["The movie was"], w2s.SearchParams(schedule="1:1,4:4", l=3), s)
    assert r.stats["rounds"] == 4  # the last pair repeats: 1, 4, 16, 16 draws
    assert r.stats["kl_bound"] == pytest.approx(math.log(1) + math.log(4) + 2 * math.log(16))
    assert r.cost.base_tokens == (1 + 4 + 16 + 16) * 3


@pytest.mark.parametrize("kw,msg", [({"schedule": "4-4"}, "W:K pairs"),
                                    ({"schedule": "0:4"}, ">= 1"),
                                    ({"schedule": "2:2", "w": 8}, "not both"),
                                    ({"schedule": 3}, "must be a string")])
def test_bad_schedules_are_refused(kw, msg):
    with pytest.raises(W2SError, match=msg):
        w2s.SearchParams(**kw)


# ------------------------------------------------------------------ normalised weighted guides
RESP = ["a fine film", "bad.", "it was a truly great movie with a great cast", "ok"]
PROMPTS4 = ["The movie was", "The movie was", "I thought", "I thought"]


def test_per_token_normalisation_divides_a_pairs_sum_by_its_length(pair):
    raw = pair.score(PROMPTS4, RESP).double()
    n = torch.tensor([len(pair.tuned.encode_responses([r])[0]) for r in RESP], dtype=torch.float64)
    got = w2s.WeightedGuide([(2.0, pair)], normalize="per_token").score(PROMPTS4, RESP)
    torch.testing.assert_close(got.double(), 2.0 * raw / n, rtol=1e-6, atol=1e-6)


def test_zscore_normalisation_standardises_each_term_within_a_prompt(pair):
    from w2s.guides.base import zscore

    s = torch.tensor([1.0, 3.0, 10.0, 10.0, 7.0], dtype=torch.float64)
    got = zscore(s, ["a", "a", "b", "b", "c"])
    assert got.tolist() == [-1.0, 1.0, 0.0, 0.0, 0.0]  # no spread, or alone: 0
    g = (3.0 * pair + 1.0 * pair).normalized("zscore")
    raw = pair.score(PROMPTS4, RESP).double()
    want = 4.0 * zscore(raw, PROMPTS4)
    torch.testing.assert_close(g.score(PROMPTS4, RESP).double(), want, rtol=1e-5, atol=1e-5)


def test_a_normalised_guide_scores_the_same_in_a_search_session(pair):
    g = (0.5 * pair + 0.5 * pair).normalized("per_token")
    sess = g.session(["The movie was", "I thought"])
    sess.reindex([0, 0, 1, 1])
    got, _ = sess.score(RESP, [False, True, False, True])
    want, _ = g.score_with_cost(PROMPTS4, RESP, [False, True, False, True])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(W2SError, match="normalize must be one of"):
        g.normalized("softmax")


def test_cbs_runs_with_a_zscored_sum_of_guides(base, pair):
    g = (0.7 * pair + 0.3 * pair).normalized("zscore")
    [r] = w2s.cbs(base, g, ["The movie was"], w2s.SearchParams(w=2, k=2, l=4),
                  SamplingParams(max_new_tokens=8, seed=1), return_all=True)
    assert len(r.candidates) == 2 and r.candidates[0].score >= r.candidates[1].score


# ------------------------------------------------------------------ eval configs
def test_an_eval_config_sweeps_the_weights_between_experts_and_they_reach_the_rule(tmp_path):
    from w2s.configfile import find_config, read_config_file
    from w2s.evaluate.config import SHIPPED, parse_config
    from w2s.evaluate.report import write_report
    from w2s.evaluate.run import run_eval
    from w2s.zoo import ZOO_DIR

    data = {"name": "t", "task": {"name": "sentiment", "gold": ["vader", "objectivity"]},
            "base": "zoo:base", "prompts": 2, "seeds": [0],
            "guide": {"tuned": ["zoo:tuned", "zoo:otuned"], "untuned": "zoo:untuned"},
            "sampling": {"max_new_tokens": 6},
            "methods": [{"method": "eft", "weights": [[1, 0], [0.3, 0.7]]}]}
    cfg = parse_config(data, tmp_path / "cfg.yaml")
    assert [m.guide.weights for m in cfg.methods] == [(1.0, 0.0), (0.3, 0.7)]
    assert len({m.hash for m in cfg.methods}) == 2
    rows = run_eval(cfg, tmp_path / "out", show_progress=False)
    base = HFModel.load(str(ZOO_DIR / "base"))
    untuned = HFModel.load(str(ZOO_DIR / "untuned"))
    guide = (0.3 * PairGuide(HFModel.load(str(ZOO_DIR / "tuned")), untuned)
             + 0.7 * PairGuide(HFModel.load(str(ZOO_DIR / "otuned")), untuned))
    second = [r for r in rows if r["method"].endswith("[0.3, 0.7])")]
    prompts = [r["prompt"] for r in second]
    ref = w2s.eft(base, guide, prompts, EFTParams(), SamplingParams(max_new_tokens=6,
                                                                     seed=0))
    assert [r["response"] for r in second] == [x.text for x in ref]
    paths = write_report(rows, tmp_path / "out")
    assert paths["tradeoff"].name == "gold_tradeoff.png" and paths["tradeoff"].is_file()
    shipped = find_config("tradeoff", SHIPPED)
    assert len(parse_config(read_config_file(shipped), shipped).methods) == 16


@pytest.mark.parametrize("guide,entry,msg", [
    ({"tuned": ["zoo:tuned", "zoo:otuned"], "untuned": "zoo:untuned", "weights": [1]}, {},
     "give 2"),
    ({"tuned": ["zoo:tuned"], "untuned": "zoo:untuned"}, {"weights": ["a"]},
     "list of numbers"),
    ({"tuned": "zoo:tuned", "untuned": "zoo:untuned", "normalize": "max"}, {},
     "normalize must be one of"),
    ({"tuned": [], "untuned": "zoo:untuned"}, {}, "empty list"),
])
def test_bad_expert_configs_are_one_line_errors(tmp_path, guide, entry, msg):
    from w2s.evaluate.config import parse_config

    data = {"name": "t", "task": "sentiment", "base": "zoo:base", "guide": guide,
            "methods": [{"method": "eft", **entry}]}
    with pytest.raises(W2SError, match=msg):
        parse_config(data, tmp_path / "cfg.yaml")


# ------------------------------------------------------------------ GenARM experts
def test_an_arm_scores_its_log_likelihood_and_two_arms_make_a_pair(pair):
    from w2s.guides import ARMGuide

    a, b = ARMGuide(pair.tuned), ARMGuide(pair.untuned)
    ended = [True, False, False, True]
    diff = (a + (-1.0) * b).score(PROMPTS4, RESP, ended)
    torch.testing.assert_close(diff, pair.score(PROMPTS4, RESP, ended), rtol=1e-5, atol=1e-4)
    assert bool((a.score(PROMPTS4, RESP) < 0).all())  # a sum of log-probabilities


def test_genarm_rule_adds_the_arms_log_probabilities():
    rule = MultiGuideRule([(0.5, T1, U), (2.0, T2, None)], beta=0.8)
    assert [m for _, m in rule.models()] == [T1, U, T2]
    base, t1, u, arm = [x.log_softmax(-1) for x in (logits(12), logits(13), logits(14),
                                                     logits(15))]
    got = rule(base, [t1, u, arm])
    torch.testing.assert_close(got, base + 0.8 * (0.5 * (t1 - u) + 2.0 * arm))


def test_eft_with_an_arm_guide_from_the_cli_equals_the_library(tiny_paths, base):
    import json

    from click.testing import CliRunner

    from w2s.cli import cli
    from w2s.guides import ARMGuide

    out = CliRunner().invoke(cli, [
        "generate", "--base", tiny_paths["base"], "--arm", tiny_paths["tuned"], "--method",
        "eft", "--beta", "0.5", "--prompt", "The movie", "--max-new-tokens", "6", "--seed", "0",
        "--json"])
    assert out.exit_code == 0, out.output
    [ref] = w2s.eft(base, 1.0 * ARMGuide(HFModel.load(tiny_paths["tuned"])), ["The movie"],
                    EFTParams(beta=0.5), SamplingParams(seed=0, max_new_tokens=6))
    assert json.loads(out.stdout)["token_ids"] == ref.token_ids
    bad = CliRunner().invoke(cli, [
        "generate", "--base", tiny_paths["base"], "--arm", tiny_paths["tuned"], "--method",
        "dlf", "--prompt", "x"])
    assert bad.exit_code == 2 and "dlf needs tuned/untuned pairs" in bad.output, bad.output


def test_a_spec_without_terms_is_no_guide(tiny_paths):
    from w2s.guides.build import guide_from_spec

    assert guide_from_spec({"normalize": "raw"}, load_lm=HFModel.load) is None
    with pytest.raises(W2SError, match="act on the guide's terms"):
        guide_from_spec({"weights": [1.0]}, load_lm=HFModel.load)


def test_a_prompt_that_fits_the_base_but_not_a_guide_is_refused_naming_the_guide(base,
                                                                                   tiny_paths):
    from w2s.decoding import get_decoder

    short = HFModel.load(tiny_paths["tuned"])
    short.model.config.max_position_embeddings = 12  # a guide with a shorter context
    guide = PairGuide(short, HFModel.load(tiny_paths["untuned"]))
    spec = get_decoder("cbs")
    with pytest.raises(W2SError, match=r"^guide: prompt of \d+ tokens \+ max_new_tokens 11 "
                                       r"exceeds the context of .*tuned.* \(12 tokens\)"):
        spec.run(base, guide, ["The movie was"], spec.make_params({}),
                 SamplingParams(seed=0, max_new_tokens=10))

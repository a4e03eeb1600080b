"""Guides against independent forward passes (no w2s code on the reference side)."""

import pytest
import reference
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import w2s
from w2s import RewardModelGuide, W2SError

PROMPTS = ["The movie was", "I thought the film was boring and", "A"]
RESPONSES = [" a delight from start to finish.", " far too long", " wonderful cast!"]


@pytest.mark.parametrize("which", ["pair", "xpair"])
def test_pair_score_is_sum_of_token_logprob_differences(which, request, tiny_paths):
    guide = request.getfixturevalue(which)
    prefix = "x" if which == "xpair" else ""
    got = guide.score(PROMPTS, RESPONSES)
    assert got.shape == (3,)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        want = reference.pair_score(tiny_paths[prefix + "tuned"], tiny_paths[prefix + "untuned"],
                                    p, r, ended=False)
        assert got[i].item() == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("which", ["pair", "xpair"])
def test_complete_responses_also_score_the_end_of_sequence(which, request, tiny_paths):
    # each model scores its *own* EOS: the cross-vocabulary pair's special tokens sit at other
    # ids than the base's (eos 3, not 2), so borrowing another tokenizer's id scores a wrong token
    guide = request.getfixturevalue(which)
    prefix = "x" if which == "xpair" else ""
    ended = [True, False, True]
    got = guide.score(PROMPTS, RESPONSES, ended=ended)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        want = reference.pair_score(tiny_paths[prefix + "tuned"], tiny_paths[prefix + "untuned"],
                                    p, r, ended[i])
        assert got[i].item() == pytest.approx(want, abs=1e-4)
    assert got[1].item() == pytest.approx(guide.score(PROMPTS[1:2], RESPONSES[1:2]).item())
    assert got[0].item() != pytest.approx(guide.score(PROMPTS[:1], RESPONSES[:1]).item(), abs=1e-3)


def test_special_tokens_of_the_two_vocabularies_differ(base, xpair):
    a, b = base.tokenizer, xpair.tuned.tokenizer
    for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
        assert getattr(a, name) != getattr(b, name)


def test_cross_vocabulary_pair_really_differs(base, xpair):
    assert base.tokenizer.get_vocab() != xpair.tuned.tokenizer.get_vocab()
    text = " a delight from start to finish."
    assert base.encode_response(text) != xpair.tuned.encode_response(text)


def test_empty_response_scores_zero(pair):
    assert pair.score(["The movie was"], [""]).tolist() == [0.0]


def test_weighted_sum_is_exact(pair, xpair):
    a, b = pair.score(PROMPTS, RESPONSES), xpair.score(PROMPTS, RESPONSES)
    combo = 0.5 * pair + xpair * 2.0
    torch.testing.assert_close(combo.score(PROMPTS, RESPONSES), 0.5 * a + 2.0 * b)
    nested = combo + pair
    assert len(nested.terms) == 3
    torch.testing.assert_close(nested.score(PROMPTS, RESPONSES), 1.5 * a + 2.0 * b)


def test_reward_model_guide_matches_direct_classifier(tiny_paths):
    path = tiny_paths["reward"]
    guide = RewardModelGuide.load(path)
    got = guide.score(PROMPTS, RESPONSES)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        with torch.no_grad():
            logits = model(torch.tensor([tok(p + r)["input_ids"]])).logits[0]
        assert got[i].item() == pytest.approx(logits.log_softmax(-1)[1].item(), abs=1e-4)


def test_reward_model_label_out_of_range(tiny_paths):
    with pytest.raises(W2SError, match="label must be in"):
        RewardModelGuide.load(tiny_paths["reward"], label=5)


def test_guides_are_built_from_one_spec_with_the_callers_loader(tiny_paths, pair):
    from w2s.guides.build import guide_from_spec

    loaded = []

    def load(ref):  # noqa: ANN001, ANN202
        loaded.append(ref)
        return {tiny_paths["tuned"]: pair.tuned, tiny_paths["untuned"]: pair.untuned}[ref]

    g = guide_from_spec({"tuned": tiny_paths["tuned"], "untuned": tiny_paths["untuned"]},
                        load_lm=load)
    assert isinstance(g, w2s.PairGuide) and g.tuned is pair.tuned and loaded == [
        tiny_paths["tuned"], tiny_paths["untuned"]]
    assert guide_from_spec(None, load_lm=load) is None
    with pytest.raises(W2SError, match="^untuned is missing: a tuned model and the untuned"):
        guide_from_spec({"tuned": tiny_paths["tuned"]}, load_lm=load)


def test_weights_that_are_not_finite_numbers_are_refused_however_they_arrive(pair):
    from w2s.guides.base import WeightedGuide

    for make in (lambda: pair * float("nan"), lambda: float("-inf") * pair,
                 lambda: WeightedGuide([(float("nan"), pair)]),
                 lambda: (pair * 1e308) * 10.0):  # an overflow to inf, through the operator
        with pytest.raises(W2SError, match=r"must be a finite number, got (nan|-?inf)"):
            make()
    with pytest.raises(W2SError, match="term 0 must be a w2s Guide, got str"):
        WeightedGuide([(1.0, "zoo:tuned")])


def test_loading_a_model_draws_no_progress_bar_and_leaves_the_setting_alone(capfd,
                                                                            monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)  # a user's bars are on
    w2s.HFModel.load("zoo:base")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the caller's choice is restored

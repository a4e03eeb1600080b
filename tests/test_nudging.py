"""Nudging (Fei et al. 2024): the base writes; where its top-1 token probability is below gamma,
the small tuned model writes the next word. Its limits are exact: gamma = 0 is the base alone,
gamma = 1 is the small model alone (random slot 1), wherever text re-encodes to the tokens that
were sampled; the hand-over rule is checked on hand-made continuations and over HTTP."""

from __future__ import annotations

import re

import pytest
from fake_engine import FakeEngine
from scripted import ScriptedBackend

import w2s
from w2s import NudgingParams, SamplingParams, W2SError
from w2s.decoding.nudging import first_unsure, one_word
from w2s.models.base import Continuation
from w2s.models.openai_api import OpenAIBackend
from w2s.zoo import ZOO_DIR

PROMPTS = ["the movie was", "i thought this film", "a waste of", "the acting"]
SP = SamplingParams(max_new_tokens=16, seed=3)


def round_trips(model, ids) -> bool:  # noqa: ANN001
    """Whether ``ids`` re-encode to themselves through their text."""
    return model.encode_response(model.decode(ids)) == list(ids)


def test_first_unsure_and_one_word_by_hand():
    lg = [-0.1, -0.5, -1.2, -0.05]  # probabilities 0.90, 0.61, 0.30, 0.95
    assert first_unsure(lg, 0.4) == 2 and first_unsure(lg, 0.2) is None
    assert first_unsure(lg, 0.0) is None and first_unsure(lg, 1.0) == 0
    c = Continuation(" good fun", [1, 2, 3], 3, "length",
                     prefixes=[" a", " a good", " a good fun", " a good fun"])
    assert one_word(c) == 1  # " good", then " fun" starts a second word
    c = Continuation(" wonder", [1, 2], 2, "length", prefixes=[" a", " a won", " a wonder"])
    assert one_word(c) == 2  # one word in two tokens
    c = Continuation(" x", [1], 1, "length", prefixes=["", " ok then"])
    assert one_word(c) == 1  # at least one token, whatever it holds


def test_gamma_zero_is_the_base_alone(zoo_base, zoo_pair):
    plain = w2s.sample(zoo_base, None, PROMPTS, SP)
    for chunk in (16, 3):
        got = w2s.nudging(zoo_base, zoo_pair, PROMPTS, NudgingParams(gamma=0.0, chunk=chunk), SP)
        for g, p in zip(got, plain):
            assert g.stats == {"small_fraction": 0.0, "nudges": 0}
            if chunk == 16 or round_trips(zoo_base, p.token_ids):
                assert g.text == p.text and g.finished == p.finished
    assert sum(g.text == p.text for g, p in zip(got, plain)) >= 2


def test_gamma_one_is_the_small_model_alone_on_slot_one(zoo_base, zoo_pair):
    got = w2s.nudging(zoo_base, zoo_pair, PROMPTS, NudgingParams(gamma=1.0), SP)
    small = w2s.sample(zoo_pair.tuned, None, PROMPTS, SP, n=2)
    same = 0
    for g, s in zip(got, small):
        assert g.stats["small_fraction"] == 1.0 and g.stats["nudges"] >= len(g.text.split())
        want = s.candidates[1]
        if round_trips(zoo_pair.tuned, want.token_ids):
            assert g.text == want.text
            same += 1
    assert same >= 2
    # the guide scores what was written; the small model's tokens are its cost
    assert all(g.cost.guide_tokens > 0 and g.score is not None for g in got)


def test_nudging_hands_over_between_the_limits_and_across_vocabularies(zoo_base):
    xpair = w2s.PairGuide.load(str(ZOO_DIR / "xtuned"), str(ZOO_DIR / "xuntuned"))
    got = w2s.nudging(zoo_base, xpair, PROMPTS, NudgingParams(gamma=0.1), SP)
    fractions = [g.stats["small_fraction"] for g in got]
    assert all(0 < f < 1 for f in fractions), fractions
    assert all(g.text and g.cost.base_tokens > 0 for g in got)


def test_nudging_needs_top_logprobs_and_a_pair(pair, zoo_base, zoo_pair):
    with pytest.raises(W2SError, match=r"^nudging needs top-1 token log-probabilities "
                                       r"\(logprobs=1\); this backend \(scripted\) returns text"):
        w2s.nudging(ScriptedBackend(), pair, ["p"])
    with pytest.raises(W2SError, match="^nudging needs the small tuned model"):
        w2s.nudging(zoo_base, None, ["p"])
    with pytest.raises(W2SError, match="gamma must be in"):
        NudgingParams(gamma=1.5)


# ------------------------------------------------------------------ over HTTP
def test_nudging_over_http_hands_over_where_the_engine_is_unsure(zoo_pair):
    engine = FakeEngine()
    try:
        base = OpenAIBackend(engine.url, "fake")
        [r] = w2s.nudging(base, zoo_pair, ["the movie was"],
                          NudgingParams(gamma=0.4, chunk=6), SamplingParams(seed=0, max_new_tokens=12))
        top = [b for b in engine.bodies if b.get("logprobs") == 1]
        assert top and all(b["max_tokens"] <= 6 for b in top)
        # every hand-over came right after the engine's sure words: none of the kept engine
        # words is a multiple of 5, the fake engine's unsure words
        engine_words = [int(n) for n in re.findall(r"(?<![A-Za-z0-9])w(\d+)", r.text)]
        assert engine_words and all(n % 5 for n in engine_words)
        assert 0 < r.stats["small_fraction"] < 1 and r.stats["nudges"] >= 1
    finally:
        engine.close()


def test_a_server_without_logprobs_is_one_line_for_nudging(zoo_pair):
    engine = FakeEngine(logprobs=False)
    try:
        with pytest.raises(W2SError, match=r"gave no top log-probabilities \(this method needs "
                                           r"logprobs=1\)$"):
            w2s.nudging(OpenAIBackend(engine.url, "fake"), zoo_pair, ["p"])
    finally:
        engine.close()


def test_nudging_from_the_cli_matches_the_python_api(zoo_base, zoo_pair):
    import json

    from click.testing import CliRunner

    from w2s.cli import cli

    out = CliRunner().invoke(cli, ["generate", "--base", "zoo:base", "--tuned", "zoo:tuned",
                                   "--untuned", "zoo:untuned", "--method", "nudging",
                                   "--gamma", "0.2", "--chunk", "4", "--max-new-tokens", "10",
                                   "--prompt", "the movie was", "--seed", "0", "--json"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)
    [want] = w2s.nudging(zoo_base, zoo_pair, ["the movie was"],
                         NudgingParams(gamma=0.2, chunk=4), SamplingParams(seed=0, max_new_tokens=10))
    assert row["response"] == want.text and row["params"]["gamma"] == 0.2

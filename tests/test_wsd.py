"""Weak-to-Strong Decoding (Song et al. 2025): the small tuned model drafts, the base takes over
where its windowed confidence in the draft first reaches the threshold. Checked exactly: the
switch rule by hand; the switch position against plain transformers in float64 (same and
another vocabulary); threshold near 0 is one draft token and then the base's own continuation
(its random slot 0); threshold near 1 is the small model's own sample (slot 1); shares and
costs add up."""

from __future__ import annotations

import math

import pytest
import reference as ref
from scripted import ScriptedBackend

import w2s
from w2s import SamplingParams, W2SError, WSDParams
from w2s.decoding.wsd import switch_index
from w2s.models.base import Request
from w2s.rng import prompt_key, stream_keys
from w2s.zoo import ZOO_DIR

PROMPTS = ["the movie was", "i thought this film", "a waste of", "the acting"]
SP = SamplingParams(max_new_tokens=16, seed=3)


def slot(prompt: str, j: int) -> int:
    import torch

    return int(stream_keys(torch.tensor([prompt_key(SP.seed, prompt)]), torch.tensor([j]))[0])


def drafts(tuned, max_draft: int) -> list[str]:  # noqa: ANN001
    """The small model's own samples on random slot 1 (what WSD drafts)."""
    sp = SamplingParams(max_new_tokens=max_draft, seed=SP.seed)
    return [r.candidates[1].text for r in w2s.sample(tuned, None, PROMPTS, sp, n=2)]


def reference_keep(path: str, prompt: str, draft: str, threshold: float, window: int) -> int:
    """Draft tokens (the base's) kept, by the paper's rule in float64 on plain transformers."""
    tok = ref.load(path)[0]
    ids = list(tok(draft, add_special_tokens=False)["input_ids"])[:SP.max_new_tokens]
    logp = ref.next_token_logits(path, prompt, ids).log_softmax(-1)
    p = [float(logp[t, x].exp()) for t, x in enumerate(ids)]
    for j in range(window - 1, len(p)):
        if math.prod(p[j - window + 1: j + 1]) ** (1 / window) >= threshold:
            return j + 1
    return len(ids)


def test_switch_index_by_hand():
    lp = [math.log(x) for x in (0.2, 0.9, 0.5, 0.95, 0.99)]
    assert switch_index(lp, 0.8, 1) == 1
    assert switch_index(lp, 0.8, 2) == 4  # sqrt(.95 * .99) = .970; sqrt(.5 * .95) = .689
    assert switch_index(lp, 0.67, 2) == 2  # sqrt(.9 * .5) = .671
    assert switch_index(lp, 0.99, 2) is None and switch_index(lp, 0.1, 6) is None
    assert switch_index([], 0.5, 1) is None


@pytest.mark.parametrize("tuned, untuned", [("tuned", "untuned"), ("xtuned", "xuntuned")])
def test_switch_is_where_the_base_confidence_first_passes(zoo_base, tuned, untuned):
    pair = w2s.PairGuide.load(str(ZOO_DIR / tuned), str(ZOO_DIR / untuned))
    texts = drafts(pair.tuned, 10)
    inside = 0
    for threshold, window in ((0.05, 2), (0.2, 1)):
        got = w2s.wsd(zoo_base, pair, PROMPTS, WSDParams(threshold, window, 10), SP)
        for r, p, d in zip(got, PROMPTS, texts):
            keep = reference_keep(str(ZOO_DIR / "base"), p, d, threshold, window)
            assert r.stats["switch_at"] == keep, (p, threshold, window)
            inside += 0 < keep < len(zoo_base.encode_response(d))
            assert r.stats["small_fraction"] + r.stats["base_fraction"] == 1.0
            assert r.cost.guide_tokens == r.stats["draft_tokens"] == 10
            assert r.stats["small_fraction"] == keep / (keep + r.cost.base_tokens)
    assert inside >= 3  # the rule decided inside drafts, not only at their ends


def test_threshold_near_zero_is_one_draft_token_then_the_base(zoo_base, zoo_pair):
    got = w2s.wsd(zoo_base, zoo_pair, PROMPTS, WSDParams(1e-12, 1, 8), SP)
    for r, p, d in zip(got, PROMPTS, drafts(zoo_pair.tuned, 8)):
        first = zoo_base.encode_response(d)[:1]
        assert r.stats["switch_at"] == 1 and r.stats["switched"]
        [[want]] = zoo_base.complete([Request(p, zoo_base.decode(first), tuple(first),
                                              (slot(p, 0),), 1)], 15, SP)
        assert r.text == want.response and r.finished == want.ended
        assert r.cost.base_tokens == want.n_tokens
        assert r.stats["small_fraction"] == 1 / (1 + want.n_tokens)


def test_threshold_near_one_is_the_small_model_alone(zoo_base, zoo_pair):
    got = w2s.wsd(zoo_base, zoo_pair, PROMPTS, WSDParams(1 - 1e-12, 6, 16), SP)
    small = w2s.sample(zoo_pair.tuned, None, PROMPTS, SP, n=2)
    same = 0
    for g, s in zip(got, small):
        want = s.candidates[1]
        assert not g.stats["switched"] and g.stats["draft_tokens"] == len(want.token_ids)
        if zoo_base.encode_response(want.text) == list(want.token_ids):  # re-encodes as sampled
            assert g.text == want.text and g.finished == want.finished
            assert g.stats["small_fraction"] == 1.0 and g.cost.base_tokens == 0
            same += 1
    assert same >= 2
    assert all(g.score is not None for g in got)  # the guide scores what was written


def test_wsd_refuses_bad_inputs(zoo_base, zoo_pair):
    for bad in (0.0, 1.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(W2SError, match=r"^threshold must be"):
            WSDParams(threshold=bad)
    with pytest.raises(W2SError, match=r"^window must be >= 1"):
        WSDParams(window=0)
    with pytest.raises(W2SError, match=r"^max_draft must be an integer"):
        WSDParams(max_draft=2.5)
    with pytest.raises(W2SError, match=r"^wsd needs the small tuned model"):
        w2s.wsd(zoo_base, None, ["p"])
    with pytest.raises(W2SError, match=r"^wsd needs per-token log-probabilities of given text; "
                                       r"this backend \(scripted\) returns text only"):
        w2s.wsd(ScriptedBackend(), zoo_pair, ["p"])


def test_an_eval_report_shows_the_small_models_mean_share(zoo_base, zoo_pair):
    from w2s.evaluate.report import summarize, table_rows

    got = w2s.wsd(zoo_base, zoo_pair, PROMPTS, WSDParams(0.05, 2, 6), SP)
    rows = [{"method": "wsd", "hash": "h", "seed": 3, "prompt_index": i, "gold": {"vader": 0.0},
             "base_logp_per_token": -1.0, "base_tokens": r.cost.base_tokens,
             "guide_tokens": r.cost.guide_tokens, "wall_time_s": 1.0, "stats": r.stats,
             "response": r.text} for i, r in enumerate(got)]
    [s] = summarize(rows)
    mean = sum(r.stats["small_fraction"] for r in got) / len(got)
    assert s["small_fraction"] == pytest.approx(mean) and 0 < mean < 1
    assert table_rows([s])[1][0][0] == f"wsd (small wrote {mean:.0%})"

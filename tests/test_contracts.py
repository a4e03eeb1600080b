"""What every decoder and guide promises beyond its tokens: result fields, costs, defaults, and
the exact error messages users see. Each test here kills mutants that survived the baseline
mutation run (docs/mutation-baseline.md)."""

from __future__ import annotations

import pytest
import torch
from scripted import EOS, CountGuide, ScriptedBackend
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import w2s
from w2s import (
    BestOfNParams,
    EFTParams,
    HFModel,
    PairGuide,
    RewardModelGuide,
    SamplingParams,
    SearchParams,
    W2SError,
)
from w2s.guides import WeightedGuide
from w2s.logits import token_kl
from w2s.rng import _signed, prompt_key, sample_from_probs
from w2s.stopping import Stopper

SP = SamplingParams(max_new_tokens=6, seed=2)


# ------------------------------------------------------------------ result fields and defaults
def test_each_decoder_labels_its_results_and_echoes_its_knobs():
    guide = CountGuide()
    [s] = w2s.sample(ScriptedBackend(), guide, ["p"], SP)
    assert (s.prompt, s.method, len(s.candidates)) == ("p", "sample", 1)
    assert s.params == {"method": "sample", "n": 1, **SP.to_dict()}
    [b] = w2s.bon(ScriptedBackend(), guide, ["p"], BestOfNParams(3), SP)
    assert (b.prompt, b.method, len(b.candidates)) == ("p", "bon", 1)
    assert b.params == {"method": "bon", "n": 3, **SP.to_dict()}
    [c] = w2s.cbs(ScriptedBackend(), guide, ["p"], SearchParams(2, 3, 2), SP)
    assert (c.prompt, c.method, len(c.candidates)) == ("p", "cbs", 1)
    assert c.params == {"method": "cbs", "w": 2, "k": 3, "l": 2, **SP.to_dict()}


def test_eft_labels_its_results_and_counts_its_tokens(ebase, epair):
    sp = SamplingParams(max_new_tokens=8, seed=1)
    out = w2s.eft(ebase, epair, ["The movie was", "A"], EFTParams(0.5), sp)
    for p, r in zip(["The movie was", "A"], out):
        assert (r.prompt, r.method) == (p, "eft")
        assert r.params == {"method": "eft", "beta": 0.5, **sp.to_dict()}
        # one base token and one token of each small model per step
        assert r.cost.base_tokens == len(r.token_ids)
        assert r.cost.guide_tokens == 2 * len(r.token_ids)


def test_greedy_eft_reports_no_kl_and_token_kl_is_zero_at_temperature_zero(ebase, epair):
    [r] = w2s.eft(ebase, epair, ["A"], EFTParams(1.0), SamplingParams(seed=0, max_new_tokens=4,
                                                                     temperature=0))
    assert "kl" not in r.stats
    kl = token_kl(torch.randn(3, 5), torch.randn(3, 5), 0.0)
    assert kl.dtype == torch.float64 and kl.tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------ costs
def test_guide_tokens_are_the_guides_own_count_over_all_rounds():
    # one prompt, many entries a round: every token the guide reports belongs to that prompt
    guide = CountGuide()  # reports sum(len(text)) tokens per call
    [r] = w2s.cbs(ScriptedBackend(eos_weight=0.3), guide, ["p"], SearchParams(2, 3, 2),
                  SamplingParams(max_new_tokens=7, seed=4))
    assert len(guide.calls) > 1
    assert r.cost.guide_tokens == sum(len(t) for call in guide.calls for t, _ in call)
    guide = CountGuide()
    [s] = w2s.sample(ScriptedBackend(), guide, ["p"], SP, n=4)
    assert s.cost.guide_tokens == sum(len(c.text) for c in s.candidates) > 0
    assert len(s.candidates) == 4


def test_weighted_guide_passes_ended_on_and_adds_token_counts(epair, xpair):
    prompts, texts, ended = ["The movie was", "A"], [" a delight", " dull"], [True, False]
    combo = 0.5 * epair + xpair * 2.0
    got, tokens = combo.score_with_cost(prompts, texts, ended)
    a, na = epair.score_with_cost(prompts, texts, ended)
    b, nb = xpair.score_with_cost(prompts, texts, ended)
    torch.testing.assert_close(got, 0.5 * a + 2.0 * b)
    assert tokens == na + nb


# ------------------------------------------------------------------ default scoring sessions
class EndAware(w2s.Guide):
    """Reads the prompt and the ``ended`` flags: no session of its own."""

    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
        ended = ended or [False] * len(responses)
        return torch.tensor([len(p) + len(r) + 100.0 * e
                             for p, r, e in zip(prompts, responses, ended)]), len(responses)


def test_default_session_scores_with_the_prompt_and_the_end():
    backend = ScriptedBackend(eos_weight=2.0)
    results = w2s.cbs(backend, EndAware(), ["p", "longer prompt"], SearchParams(2, 2, 2),
                      SamplingParams(max_new_tokens=6, seed=3), return_all=True)
    assert any(c.finished for r in results for c in r.candidates)
    for r in results:
        for c in r.candidates:
            assert c.score == len(r.prompt) + len(c.text) + 100.0 * c.finished


def test_weighted_session_scores_finished_candidates_with_their_end(ebase, epair, ending_paths):
    import reference

    combo = 0.5 * epair + epair
    sp = SamplingParams(max_new_tokens=10, temperature=1.0, seed=3)
    results = w2s.bon(ebase, combo, ["The movie was", "A"], BestOfNParams(4), sp,
                            return_all=True)
    cands = [(r.prompt, c) for r in results for c in r.candidates]
    assert any(c.finished for _, c in cands)
    for p, c in cands:
        want = 1.5 * reference.pair_score(ending_paths["tuned"], ending_paths["untuned"], p,
                                          c.text, c.finished)
        assert c.score == pytest.approx(want, abs=3e-4)


class OwnEncoder(HFModel):
    """A model that tokenizes responses its own way (here: the same way, through an override),
    which the pair's incremental session must honour instead of its shared tail tokenizer."""

    def encode_responses(self, texts):  # noqa: ANN001, ANN201
        return super().encode_responses(texts)


def test_incremental_pair_scores_with_mixed_tokenizers_and_overrides(base, pair, xpair):
    sp = SamplingParams(max_new_tokens=12, seed=1)
    tuned = OwnEncoder(pair.tuned.model, pair.tuned.tokenizer)
    with pytest.raises(W2SError, match="different vocabularies"):  # a meaningless ratio
        PairGuide(pair.tuned, xpair.untuned)
    for guide in (PairGuide(tuned, pair.untuned),):
        results = w2s.cbs(base, guide, ["The movie was", "A"], SearchParams(2, 2, 3), sp,
                          return_all=True)
        for r in results:
            want = guide.score([r.prompt] * len(r.candidates), [c.text for c in r.candidates],
                               [c.finished for c in r.candidates])
            assert [c.score for c in r.candidates] == pytest.approx(want.tolist(), abs=1e-4)


# ------------------------------------------------------------------ errors users see
def test_decoder_errors_name_the_method_and_the_fix(base, pair, xpair):
    with pytest.raises(W2SError, match=r"^cbs needs a guide \(a tuned/untuned pair or a reward"):
        w2s.cbs(ScriptedBackend(), None, ["p"])
    with pytest.raises(W2SError, match=r"^bon needs a guide"):
        w2s.bon(ScriptedBackend(), None, ["p"])
    with pytest.raises(W2SError, match=r"^cbs: guide must be a w2s Guide, got str$"):
        w2s.cbs(ScriptedBackend(), "x", ["p"])  # type: ignore[arg-type]
    for n in (0, "2"):
        with pytest.raises(W2SError, match=f"^n must be >= 1, got {n}$"):
            w2s.sample(ScriptedBackend(), None, ["p"], n=n)  # type: ignore[arg-type]
    with pytest.raises(W2SError, match=r"^eft needs tuned/untuned pairs"):
        w2s.eft(base, CountGuide(), ["p"])
    with pytest.raises(W2SError, match=r"^eft needs next-token log-probabilities; this "
                                       r"backend \(scripted\) returns text only$"):
        w2s.eft(ScriptedBackend(), pair, ["p"])
    with pytest.raises(W2SError, match=r"the tuned model .* which work across vocabularies$"):
        w2s.eft(base, xpair, ["p"])  # a pair whose vocabulary is not the base's
    with pytest.raises(W2SError, match=r"^a weighted guide needs at least one term$"):
        WeightedGuide([])


# ------------------------------------------------------------------ reward-model guide
def _classifier(path: str):  # noqa: ANN202
    return (AutoModelForSequenceClassification.from_pretrained(path).eval(),
            AutoTokenizer.from_pretrained(path))


def test_reward_model_labels_names_and_bounds(tiny_paths):
    path = tiny_paths["reward"]
    g0 = RewardModelGuide.load(path, label=0)
    g1 = RewardModelGuide.load(path)
    assert g0.name == path and g0.label == 0 and g1.label == 1
    s0, s1 = g0.score(["The movie was"], [" good"]), g1.score(["The movie was"], [" good"])
    assert torch.allclose(s0.exp() + s1.exp(), torch.ones(1), atol=1e-5)  # two labels
    with pytest.raises(W2SError, match=r"^label must be in \[0, 2\) for .*, got 2$"):
        RewardModelGuide.load(path, label=2)
    model, tok = _classifier(path)
    assert RewardModelGuide(model, tok).name == type(model).__name__


def test_reward_model_chat_format(tiny_paths):
    path = tiny_paths["reward"]
    guide = RewardModelGuide.load(path, chat=True)
    model, tok = _classifier(path)
    text = tok.apply_chat_template([{"role": "user", "content": "Review it."},
                                    {"role": "assistant", "content": " Lovely."}], tokenize=False)
    assert text == "<|user|>Review it.<|eos|><|assistant|> Lovely.<|eos|>"
    with torch.no_grad():
        want = model(torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])).logits
    got = guide.score(["Review it."], [" Lovely."])
    assert got.item() == pytest.approx(want.log_softmax(-1)[0, 1].item(), abs=1e-5)
    # chat is off by default when built from objects
    plain = RewardModelGuide(model, tok)
    with torch.no_grad():
        want = model(torch.tensor([tok("Review it. Lovely.")["input_ids"]])).logits
    assert plain.score(["Review it."], [" Lovely."]).item() == \
        pytest.approx(want.log_softmax(-1)[0, 1].item(), abs=1e-5)
    tok.chat_template = None
    with pytest.raises(W2SError, match=r"^chat needs a chat template, and reward model .* has none; leave chat off$"):
        RewardModelGuide(model, tok, chat=True)
    RewardModelGuide(model, tok)  # no template is fine without chat


def test_reward_model_without_pad_token_pads_with_eos_and_batches_exactly(tiny_paths):
    model, tok = _classifier(tiny_paths["reward"])
    tok.pad_token = None
    model.config.pad_token_id = None
    guide = RewardModelGuide(model, tok, batch_size=4)
    assert guide.pad_id == tok.eos_token_id == model.config.pad_token_id
    prompts, texts = ["The movie was", "A", "I thought"], [" fine", " a long, long film", ""]
    batched = guide.score(prompts, texts)
    alone = torch.cat([guide.score([p], [t]) for p, t in zip(prompts, texts)])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_reward_model_load_failure_is_one_line(tmp_path):
    with pytest.raises(W2SError, match=r"^model '.*nope' does not exist \(no such folder"):
        RewardModelGuide.load(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()  # a folder that holds no model: the loader's own error
    with pytest.raises(W2SError, match=r"^cannot load model .*empty"):
        RewardModelGuide.load(str(tmp_path / "empty"))


# ------------------------------------------------------------------ edges of the small helpers
def test_rng_and_stopper_edges():
    assert _signed(1 << 63) == -(1 << 63) and _signed((1 << 63) - 1) == (1 << 63) - 1
    # a seed of 65+ digits must not crash (blake2b keys hold 64 bytes: the key is cut there)
    assert prompt_key(10**70, "x") == prompt_key(10**70, "x")
    zero = torch.zeros(1, 4)  # an all-zero row still gives a valid token id
    assert sample_from_probs(zero, torch.tensor([0.5], dtype=torch.float64)).tolist() == [3]
    stopper = Stopper(lambda ids: "".join("ab"[i] for i in ids if i < 2), [EOS], ["ba"])
    assert not stopper.ended([]) and stopper.ended([1, 0]) and not stopper.ended([0, 0])


def test_stop_text_cuts_at_the_first_appearance_of_any_stop_string():
    decode = "".join  # ids are characters here
    assert Stopper(decode, [], ["ba"]).text(list("abba ba")) == "ab"  # first, not last
    assert Stopper(decode, [], ["x", "b"]).text(list("bab")) == ""  # a stop at position 0
    assert Stopper(decode, [], ["zz", "a"]).text(list("bab")) == "b"
    assert Stopper(decode, [], ["zz"]).text(list("bab")) == "bab"

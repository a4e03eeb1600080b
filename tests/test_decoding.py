"""Decoders: exact equivalences on tiny models, and the search algorithm on a scripted backend."""

import pytest
import torch
from scripted import EOS, CountGuide, ScriptedBackend

import w2s
from w2s import BestOfNParams, EFTParams, SamplingParams, SearchParams, W2SError
from w2s.decoding.eft import eft_logprobs
from w2s.logits import filtered_probs
from w2s.rng import prompt_key, sample_from_probs, stream_keys, uniforms

PROMPTS = ["The movie was", "I thought the film was boring and far too long, and", "A"]


# --------------------------------------------------------------- equivalences on tiny models
@pytest.mark.parametrize("seed", [0, 1])
def test_cbs_with_w_k_1_is_plain_sampling(base, pair, seed):
    sp = SamplingParams(max_new_tokens=23, temperature=0.9, seed=seed)
    a = w2s.sample(base, pair, PROMPTS, sp)
    b = w2s.cbs(base, pair, PROMPTS, SearchParams(w=1, k=1, l=5), sp)
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids and x.text == y.text
        assert x.score == pytest.approx(y.score, rel=1e-5)  # incremental vs full scoring


@pytest.mark.parametrize("l_", [12, 40])
def test_cbs_with_long_chunk_is_best_of_n(base, pair, l_):
    sp = SamplingParams(max_new_tokens=12, temperature=1.0, seed=5)
    a = w2s.bon(base, pair, PROMPTS, BestOfNParams(n=6), sp, return_all=True)
    b = w2s.cbs(base, pair, PROMPTS, SearchParams(w=3, k=2, l=l_), sp, return_all=True)
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids
        # CBS keeps the top W=3 of the same N=6 samples Best-of-N ranks
        assert [c.token_ids for c in y.candidates] == [c.token_ids for c in x.candidates[:3]]
        assert len(x.candidates) == 6
        scores = [c.score for c in x.candidates]
        assert scores == sorted(scores, reverse=True)


def test_best_of_n_picks_the_max_of_n_plain_samples(base, pair):
    sp = SamplingParams(max_new_tokens=10, seed=2)
    samples = w2s.sample(base, pair, PROMPTS[:2], sp, n=5)
    best = w2s.bon(base, pair, PROMPTS[:2], BestOfNParams(n=5), sp)
    for s, b in zip(samples, best):
        top = max(s.candidates, key=lambda c: c.score)
        assert b.token_ids == top.token_ids and b.score == pytest.approx(top.score)
        assert b.cost.base_tokens == sum(len(c.token_ids) for c in s.candidates)


def test_sample_token_is_inverse_cdf_of_the_model_distribution(base):
    sp = SamplingParams(max_new_tokens=1, temperature=0.8, top_k=50, seed=9)
    [r] = w2s.sample(base, None, ["The movie was"], sp)
    logits = base.start([base.encode_prompt("The movie was")]).logits
    u = uniforms(stream_keys(torch.tensor([prompt_key(9, "The movie was")]),
                             torch.zeros(1, dtype=torch.long)), torch.zeros(1, dtype=torch.long))
    want = sample_from_probs(filtered_probs(logits, 0.8, 50, 1.0), u).item()
    assert r.token_ids == [want]


def test_batching_does_not_change_outputs(base, pair):
    sp = SamplingParams(max_new_tokens=15, seed=4)
    together = w2s.cbs(base, pair, PROMPTS, SearchParams(2, 2, 4), sp)
    for p, r in zip(PROMPTS, together):
        [alone] = w2s.cbs(base, pair, [p], SearchParams(2, 2, 4), sp)
        assert alone.token_ids == r.token_ids


def test_seed_changes_and_reproduces(base, pair):
    a = w2s.cbs(base, pair, PROMPTS[:1], SearchParams(2, 2, 4), SamplingParams(seed=1))
    b = w2s.cbs(base, pair, PROMPTS[:1], SearchParams(2, 2, 4), SamplingParams(seed=1))
    c = w2s.cbs(base, pair, PROMPTS[:1], SearchParams(2, 2, 4), SamplingParams(seed=2))
    assert a[0].token_ids == b[0].token_ids != c[0].token_ids


def test_cross_vocabulary_cbs_scores_with_the_pairs_own_tokenizer(base, xpair):
    sp = SamplingParams(max_new_tokens=12, seed=0)
    [r] = w2s.cbs(base, xpair, ["The movie was"], SearchParams(2, 2, 4), sp)
    assert r.score == pytest.approx(xpair.score(["The movie was"], [r.text], [r.finished]).item(),
                                    abs=1e-4)  # float32 sums of ~70: 1e-5 is thread-count noise


def test_search_beats_sampling_on_the_guide_score(base, pair):
    # what the search optimises must go up: mean guide score over seeds
    sp = [SamplingParams(max_new_tokens=15, seed=s) for s in range(3)]
    plain = [r.score for s in sp for r in w2s.sample(base, pair, PROMPTS, s)]
    search = [r.score for s in sp for r in w2s.cbs(base, pair, PROMPTS, SearchParams(4, 4, 5), s)]
    assert sum(search) / len(search) > sum(plain) / len(plain)


# ---------------------------------------------------------------------------- EFT
def test_eft_logprobs_formula_on_synthetic_tensors():
    g = torch.Generator().manual_seed(0)
    b, t, u = (torch.randn(2, 7, generator=g) for _ in range(3))
    got = eft_logprobs(b, t, u, 0.7).exp()
    pb, pt, pu = b.softmax(-1), t.softmax(-1), u.softmax(-1)
    want = pb * (pt / pu) ** 0.7
    torch.testing.assert_close(got, want / want.sum(-1, keepdim=True))


def test_eft_first_step_distribution_equals_formula(base, pair):
    beta, prompt = 1.5, "The movie was"
    lb = base.start([base.encode_prompt(prompt)]).logits
    lt = pair.tuned.start([pair.tuned.encode_prompt(prompt)]).logits
    lu = pair.untuned.start([pair.untuned.encode_prompt(prompt)]).logits
    want = lb.softmax(-1) * (lt.softmax(-1) / lu.softmax(-1)) ** beta
    want = want / want.sum()
    torch.testing.assert_close(eft_logprobs(lb, lt, lu, beta).exp(), want)
    # and the sampled token is the inverse-CDF draw from exactly that vector
    sp = SamplingParams(max_new_tokens=1, temperature=1.0, seed=3)
    [r] = w2s.eft(base, pair, [prompt], EFTParams(beta), sp)
    u = uniforms(stream_keys(torch.tensor([prompt_key(3, prompt)]), torch.zeros(1, dtype=torch.long)),
                 torch.zeros(1, dtype=torch.long))
    assert r.token_ids == [sample_from_probs(want, u).item()]


def test_eft_with_beta_zero_is_plain_sampling(base, pair):
    sp = SamplingParams(max_new_tokens=20, seed=7)
    a = w2s.sample(base, None, PROMPTS, sp)
    b = w2s.eft(base, pair, PROMPTS, EFTParams(0.0), sp)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]


def test_eft_refuses_different_vocabularies(base, xpair):
    with pytest.raises(W2SError, match=r"eft needs one vocabulary.*tuned model.*cbs or bon"):
        w2s.eft(base, xpair, ["The movie was"], EFTParams(1.0), SamplingParams(seed=0, max_new_tokens=3))


# --------------------------------------------------------------------- stopping
def test_stop_string_ends_and_cuts_the_response(base):
    sp = SamplingParams(max_new_tokens=40, temperature=1.0, seed=0)
    [free] = w2s.sample(base, None, ["The movie was"], sp)
    stop = free.text[5:7]  # a string the unconstrained sample contains
    assert stop
    [r] = w2s.sample(base, None, ["The movie was"],
                     SamplingParams(max_new_tokens=40, temperature=1.0, seed=0, stop=(stop,)))
    assert r.finished and stop not in r.text
    assert free.text.startswith(r.text) and len(r.token_ids) < len(free.token_ids)


def test_eos_ends_the_response(base):
    eos = base.tokenizer.eos_token_id
    # seeds until one sample ends by EOS on its own; the tiny model emits it now and then
    for seed in range(200):
        [r] = w2s.sample(base, None, ["A"], SamplingParams(max_new_tokens=30, temperature=1.5,
                                                           seed=seed))
        if r.finished:
            assert r.token_ids[-1] == eos and r.token_ids.count(eos) == 1
            return
    pytest.fail("no sample ended by EOS in 200 seeds")


# ------------------------------------------------ the search algorithm, on a scripted backend
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("wkl", [(2, 3, 2), (3, 2, 3), (1, 4, 1), (4, 4, 5)])
def test_cbs_round_structure_and_top_w_selection(seed, wkl):
    w, k, l_ = wkl
    max_new = 9
    backend, guide = ScriptedBackend(eos_weight=1.5), CountGuide()
    sp = SamplingParams(max_new_tokens=max_new, seed=seed)
    [res] = w2s.cbs(backend, guide, ["p"], SearchParams(w, k, l_), sp, return_all=True)
    assert len(backend.calls) == len(guide.calls)
    carried: list[tuple[list[int], bool, float]] = []  # finished entries kept from earlier rounds
    key = torch.tensor([prompt_key(seed, "p")])
    slots = list(range(w * k))  # round 1: child j of the empty response uses slot j
    for r, call in enumerate(backend.calls):
        if r == 0:
            assert call["parents"] == [[]] * (w * k)  # round 1: W*K chunks from the empty response
        # every child samples its own random stream: slot rank*K + j of its prompt
        assert call["streams"] == stream_keys(key.expand(len(slots)), torch.tensor(slots)).tolist()
        assert call["max_tokens"] == min(l_, max_new - len(call["parents"][0]))
        scores = [s for _, s in guide.calls[r]]
        # the guide scores each child's whole response text
        assert [t for t, _ in guide.calls[r]] == [backend.decode(c) for c, _ in call["children"]]
        pool = [(c, e, s) for (c, e), s in zip(call["children"], scores)] + carried
        ranked = sorted(pool, key=lambda x: -x[2])[:w]  # top W, ties keep candidate order
        done = [x for x in ranked if x[1] or len(x[0]) >= max_new]
        live = [x for x in ranked if not (x[1] or len(x[0]) >= max_new)]
        if r + 1 < len(backend.calls):
            # exactly the unfinished top-W entries are expanded, K times each, in rank order
            assert backend.calls[r + 1]["parents"] == [x[0] for x in live for _ in range(k)]
            # child j of the entry at rank q (finished entries keep their rank) uses slot q*K+j
            slots = [q * k + j for q, x in enumerate(ranked) if x in live for j in range(k)]
        else:
            assert not live
            assert [c.token_ids for c in res.candidates] == [x[0] for x in ranked]
            assert [c.score for c in res.candidates] == pytest.approx([x[2] for x in ranked])
        carried = done
    assert res.text == res.candidates[0].text and res.score == max(c.score for c in res.candidates)


def test_finished_entries_are_not_expanded_and_stay_candidates():
    # guide loves short finished responses: an early EOS entry must survive to the end
    class ShortGuide(CountGuide):
        def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
            s = torch.tensor([100.0 - len(r) for r in responses])
            self.calls.append(list(zip(responses, s.tolist())))
            return s, 0

    for seed in range(30):
        backend, guide = ScriptedBackend(eos_weight=1.0), ShortGuide()
        [res] = w2s.cbs(backend, guide, ["p"], SearchParams(2, 2, 2),
                        SamplingParams(max_new_tokens=8, seed=seed), return_all=True)
        first_round_ended = [c for c in guide.calls[0]]
        if len(backend.calls) > 1 and res.finished and len(res.token_ids) <= 2:
            for call in backend.calls[1:]:
                for p in call["parents"]:
                    assert EOS not in p  # finished entries are never parents
            assert res.token_ids[-1] == EOS
            assert res.score == max(s for _, s in first_round_ended)
            return
    pytest.fail("no seed produced an early-finished winner")


# ------------------------------------------- KV-cached search vs the simple reference path
class StatelessView:
    """The base model through the text-level ``Backend`` protocol only: no search state, every
    chunk re-encodes prompt + response (what any engine without per-row state does)."""

    def __init__(self, model):  # noqa: ANN001
        self.model, self.name, self.batch_size = model, model.name, model.batch_size

    def check_prompts(self, prompts, n):  # noqa: ANN001
        return self.model.check_prompts(prompts, n)

    def complete(self, *args):  # noqa: ANN002
        return self.model.complete(*args)


@pytest.fixture(scope="module")
def wide_base(tiny_paths):
    return w2s.HFModel.load(tiny_paths["base"], batch_size=512)


@pytest.mark.parametrize("wkl", [(2, 2, 4), (4, 4, 5), (3, 1, 7)])
def test_cached_search_equals_reference_path(wide_base, pair, wkl):
    sp = SamplingParams(max_new_tokens=21, temperature=1.0, seed=11)
    fast = w2s.cbs(wide_base, pair, PROMPTS, SearchParams(*wkl), sp, return_all=True)
    slow = w2s.cbs(StatelessView(wide_base), pair, PROMPTS, SearchParams(*wkl), sp,
                   return_all=True)
    for f, s in zip(fast, slow):
        assert [c.token_ids for c in f.candidates] == [c.token_ids for c in s.candidates]
        assert [c.score for c in f.candidates] == pytest.approx([c.score for c in s.candidates],
                                                                abs=1e-4)
        assert f.cost.base_tokens == s.cost.base_tokens


def test_prompts_of_different_lengths_batched_equal_one_at_a_time(wide_base, pair):
    sp = SamplingParams(max_new_tokens=17, seed=6, stop=("!",))
    together = w2s.cbs(wide_base, pair, PROMPTS, SearchParams(3, 2, 4), sp)
    for p, r in zip(PROMPTS, together):
        [alone] = w2s.cbs(wide_base, pair, [p], SearchParams(3, 2, 4), sp)
        assert alone.token_ids == r.token_ids and alone.text == r.text


def test_sampling_many_per_prompt_cached_equals_reference(wide_base):
    sp = SamplingParams(max_new_tokens=15, top_p=0.9, seed=2)
    a = w2s.sample(wide_base, None, PROMPTS, sp, n=4)
    b = w2s.sample(StatelessView(wide_base), None, PROMPTS, sp, n=4)
    assert [[c.token_ids for c in r.candidates] for r in a] == \
        [[c.token_ids for c in r.candidates] for r in b]


def test_ignore_eos_samples_full_length(base):
    for seed in range(200):
        sp = SamplingParams(max_new_tokens=30, temperature=1.5, seed=seed)
        [r] = w2s.sample(base, None, ["A"], sp)
        if r.finished:
            break
    else:
        pytest.fail("no EOS in 200 seeds")
    [full] = w2s.sample(base, None, ["A"], SamplingParams(max_new_tokens=30, temperature=1.5,
                                                          seed=seed, ignore_eos=True))
    assert len(full.token_ids) == 30 and full.token_ids[: len(r.token_ids)] == r.token_ids
    assert not full.finished


def test_memory_is_checked_before_an_impossible_batch(base):
    with pytest.raises(W2SError, match=r"^batch_size is too large here: .*GiB of KV cache.*lower it"):
        base.check_memory(10**7, 10**5)
    base.check_memory(16, 64)  # a small batch passes


def test_a_missing_seed_is_fresh_randomness_recorded_in_the_result(base, pair):
    """As OpenAI and vLLM: no seed, a new draw every call; the seed drawn is in the result, and
    giving it back repeats the response exactly."""
    import dataclasses

    sp = SamplingParams(max_new_tokens=8, temperature=1.0)
    assert sp.seed is None
    runs = [w2s.sample(base, None, ["The movie was"], sp)[0] for _ in range(3)]
    assert len({r.seed for r in runs}) == 3 and all(isinstance(r.seed, int) for r in runs)
    assert len({r.text for r in runs}) > 1
    for r in runs:
        again = w2s.sample(base, None, ["The movie was"], dataclasses.replace(sp, seed=r.seed))
        assert again[0].text == r.text and again[0].seed == r.seed
    [c] = w2s.cbs(base, pair, ["The movie was"], w2s.SearchParams(2, 2, 4), sp)
    [d] = w2s.cbs(base, pair, ["The movie was"], w2s.SearchParams(2, 2, 4),
                  dataclasses.replace(sp, seed=c.seed))
    assert (d.text, d.params["seed"]) == (c.text, c.seed)

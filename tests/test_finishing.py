"""Exact equivalences where responses really finish.

The models of ``ending_paths`` carry a constant boost on their EOS logit, so most responses end
by EOS within a few tokens. On the plain tiny models almost nothing finishes, and then a bug in
how a finished candidate is scored (the pair's EOS term), how decoding stops, or how a stop string
split across two chunks is found, passes every equivalence. References are independent
``transformers`` forward passes (``reference.py``).
"""

from __future__ import annotations

import pytest
import reference

import w2s
from w2s import BestOfNParams, EFTParams, SamplingParams, SearchParams

PROMPTS = ["The movie was", "I thought the film was boring and far too long, and", "A",
           "One of the best"]


def finished_share(results) -> float:  # noqa: ANN001
    cands = [c for r in results for c in r.candidates]
    return sum(c.finished for c in cands) / len(cands)


def assert_ends_by_eos_once(model, ids: list[int], finished: bool, max_new: int) -> None:  # noqa: ANN001
    eos = model.tokenizer.eos_token_id
    assert eos not in ids[:-1]  # nothing is sampled after EOS
    if finished:
        assert ids[-1] == eos
    else:
        assert len(ids) == max_new and ids[-1] != eos


def assert_reference_scores(paths, prompt: str, cands) -> None:  # noqa: ANN001
    for c in cands:
        want = reference.pair_score(paths["tuned"], paths["untuned"], prompt, c.text, c.finished)
        assert c.score == pytest.approx(want, abs=2e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_cbs_w_k_1_is_sampling_when_responses_finish(ebase, epair, ending_paths, seed):
    sp = SamplingParams(max_new_tokens=20, temperature=1.0, seed=seed)
    a = w2s.sample(ebase, epair, PROMPTS, sp)
    b = w2s.cbs(ebase, epair, PROMPTS, SearchParams(w=1, k=1, l=3), sp)
    assert 0.3 <= finished_share(a) < 1  # both kinds of ending are exercised
    for p, x, y in zip(PROMPTS, a, b):
        assert (x.token_ids, x.text, x.finished) == (y.token_ids, y.text, y.finished)
        assert_ends_by_eos_once(ebase, y.token_ids, y.finished, 20)
        assert_reference_scores(ending_paths, p, x.candidates + y.candidates)


def test_best_of_n_ranks_exactly_the_n_plain_samples(ebase, epair, ending_paths):
    sp = SamplingParams(max_new_tokens=16, temperature=1.0, seed=4)
    n = 5
    plain = w2s.sample(ebase, epair, PROMPTS, sp, n=n)
    best = w2s.bon(ebase, epair, PROMPTS, BestOfNParams(n=n), sp, return_all=True)
    assert 0.3 <= finished_share(plain) < 1
    for p, s, b in zip(PROMPTS, plain, best):
        # the same N responses, ranked by score (stable: ties keep sample order)
        ranked = sorted(s.candidates, key=lambda c: -c.score)
        assert [(c.token_ids, c.finished) for c in b.candidates] == \
            [(c.token_ids, c.finished) for c in ranked]
        assert [c.score for c in b.candidates] == pytest.approx([c.score for c in ranked], abs=1e-4)
        assert b.token_ids == ranked[0].token_ids and b.score == pytest.approx(ranked[0].score, abs=1e-4)
        assert_reference_scores(ending_paths, p, b.candidates)
        assert b.cost.base_tokens == sum(len(c.token_ids) for c in s.candidates)


@pytest.mark.parametrize("l_", [16, 40])
def test_cbs_with_long_chunk_is_best_of_n_when_responses_finish(ebase, epair, l_):
    sp = SamplingParams(max_new_tokens=16, temperature=1.0, seed=8)
    a = w2s.bon(ebase, epair, PROMPTS, BestOfNParams(n=6), sp, return_all=True)
    b = w2s.cbs(ebase, epair, PROMPTS, SearchParams(w=3, k=2, l=l_), sp, return_all=True)
    assert 0.3 <= finished_share(a) < 1
    for x, y in zip(a, b):
        assert [(c.token_ids, c.finished) for c in y.candidates] == \
            [(c.token_ids, c.finished) for c in x.candidates[:3]]


def test_eft_beta_zero_is_sampling_and_stops_at_eos(ebase, epair):
    sp = SamplingParams(max_new_tokens=20, temperature=1.0, seed=3)
    a = w2s.sample(ebase, None, PROMPTS, sp)
    b = w2s.eft(ebase, epair, PROMPTS, EFTParams(0.0), sp)
    assert 0.3 <= finished_share(a) < 1
    for x, y in zip(a, b):
        assert (x.token_ids, x.text, x.finished) == (y.token_ids, y.text, y.finished)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eft_stops_where_its_own_samples_end(ebase, epair, ending_paths, seed):
    sp = SamplingParams(max_new_tokens=12, temperature=1.0, seed=seed)
    out = w2s.eft(ebase, epair, PROMPTS, EFTParams(1.0), sp)
    assert any(r.finished for r in out)
    for p, r in zip(PROMPTS, out):
        assert_ends_by_eos_once(ebase, r.token_ids, r.finished, 12)
        assert_reference_scores(ending_paths, p, r.candidates)


@pytest.mark.parametrize("wkl", [(2, 2, 3), (3, 2, 1), (2, 3, 5)])
def test_cached_search_equals_reference_path_when_responses_finish(ebase, epair, wkl):
    from test_decoding import StatelessView

    sp = SamplingParams(max_new_tokens=14, temperature=1.0, seed=3)
    fast = w2s.cbs(ebase, epair, PROMPTS, SearchParams(*wkl), sp, return_all=True)
    slow = w2s.cbs(StatelessView(ebase), epair, PROMPTS, SearchParams(*wkl), sp, return_all=True)
    assert 0.3 <= finished_share(fast) < 1
    for f, s in zip(fast, slow):
        assert [(c.token_ids, c.finished) for c in f.candidates] == \
            [(c.token_ids, c.finished) for c in s.candidates]
        assert [c.score for c in f.candidates] == pytest.approx([c.score for c in s.candidates],
                                                                abs=1e-4)
        assert f.cost.base_tokens == s.cost.base_tokens


def test_cross_vocabulary_search_scores_finished_responses_with_the_pairs_own_eos(
        ebase, xpair, tiny_paths):
    sp = SamplingParams(max_new_tokens=14, temperature=1.0, seed=3)
    # all N candidates come back, so finished ones are there whatever the pair prefers
    results = w2s.bon(ebase, xpair, PROMPTS, BestOfNParams(5), sp, return_all=True)
    assert 0 < finished_share(results) < 1
    paths = {"tuned": tiny_paths["xtuned"], "untuned": tiny_paths["xuntuned"]}
    for p, r in zip(PROMPTS, results):
        assert_reference_scores(paths, p, r.candidates)


def test_a_finished_entry_survives_against_later_rounds(ebase, epair):
    # an entry that finished rounds ago stays a candidate while others grow past it
    sp = SamplingParams(max_new_tokens=14, temperature=1.0, seed=3)
    results = w2s.cbs(ebase, epair, PROMPTS, SearchParams(4, 2, 2), sp, return_all=True)
    assert any(c.finished and len(c.token_ids) + 2 < max(len(x.token_ids) for x in r.candidates)
               for r in results for c in r.candidates)


# ------------------------------------------------- stop strings that span two chunks
def stop_spanning_two_tokens(model, ids: list[int]) -> tuple[str, int]:  # noqa: ANN001
    """A 2-character stop string whose first appearance in the text of ``ids`` spans the
    boundary between two tokens, and the number of tokens up to where it is complete."""
    text = model.decode(ids)
    for i in range(3, len(ids) - 1):
        left, right = model.decode(ids[i: i + 1]), model.decode(ids[i + 1: i + 2])
        if not left or not right:
            continue
        stop = left[-1] + right[0]
        n = next(n for n in range(1, len(ids) + 1) if stop in model.decode(ids[:n]))
        if stop in text and n == i + 2 and stop not in right:
            return stop, n
    raise AssertionError("no stop string spans two tokens")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stop_string_across_chunks_cuts_exactly_where_it_starts(base, pair, seed):
    sp = SamplingParams(max_new_tokens=30, temperature=1.0, seed=seed, ignore_eos=True)
    [free] = w2s.sample(base, None, ["The movie was"], sp)
    stop, n = stop_spanning_two_tokens(base, free.token_ids)
    want_text = free.text[: free.text.index(stop)]
    stopped = SamplingParams(max_new_tokens=30, temperature=1.0, seed=seed, ignore_eos=True,
                             stop=(stop,))
    # L=1: every token is its own chunk, so the stop string is split across two chunks
    runs = [w2s.sample(base, pair, ["The movie was"], stopped),
            w2s.cbs(base, pair, ["The movie was"], SearchParams(1, 1, 1), stopped),
            w2s.eft(base, pair, ["The movie was"], EFTParams(0.0), stopped)]
    for [r] in runs:
        assert r.finished and r.token_ids == free.token_ids[:n] and r.text == want_text
        # a stopped response is complete: the guide scores its end
        assert r.score == pytest.approx(pair.score(["The movie was"], [want_text], [True]).item(),
                                        abs=1e-4)

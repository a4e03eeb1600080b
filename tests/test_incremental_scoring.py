"""Incremental (KV-cached, re-tokenize from the last safe boundary) guide scoring equals full
re-scoring, for same and different tokenizers, when chunks merge across token boundaries and
when a text shrinks (a stop string cut it)."""

import pytest
import torch

import w2s

PROMPTS = ["The movie was", "I thought the film was boring and far too long, and"]
# per prompt: a lineage of texts, each the previous one plus a chunk; BPE merges happen across
# chunk boundaries ("delig" + "ht"), and one text shrinks (a stop string cut it)
LINEAGES = [
    ["", " a", " a delig", " a delight fr", " a delight from start", " a delight from"],
    ["", " the", " the plot made", " the plot made no sen", " the plot made no sense at all."],
]


@pytest.mark.parametrize("which", ["pair", "xpair"])
def test_session_scores_equal_full_rescoring(which, request):
    guide = request.getfixturevalue(which)
    roots = ["r0", "r1"]
    sess = guide.session(PROMPTS, roots)
    parents = list(roots)
    for step in range(1, max(map(len, LINEAGES))):
        owners, keys, texts, pars = [], [], [], []
        for i, lineage in enumerate(LINEAGES):
            t = lineage[min(step, len(lineage) - 1)]
            # two siblings per parent: the lineage text and a variant, as CBS expands K ways
            for v, text in enumerate([t, t + " ok"]):
                owners.append(i)
                keys.append(f"{i}-{step}-{v}")
                texts.append(text)
                pars.append(parents[i])
        ended = [v == 1 and step % 2 == 0 for v in range(2) for _ in LINEAGES]
        got, fed = sess.score(owners, pars, keys, texts, ended)
        want = guide.score([PROMPTS[i] for i in owners], texts, ended)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
        assert fed > 0
        # keep the lineage children (variant 0) only, as selection would
        parents = [f"{i}-{step}-0" for i in range(len(LINEAGES))]
        sess.keep(parents)


def test_incremental_feeds_far_fewer_tokens_than_full(pair):
    sess = pair.session(["The movie was"], ["root"])
    text, parent, fed_total, full_total = "", "root", 0, 0
    for step in range(12):
        text += " and then it was good"
        _, fed = sess.score([0], [parent], [f"k{step}"], [text])
        _, full = pair.score_with_cost(["The movie was"], [text])
        fed_total, full_total = fed_total + fed, full_total + full
        sess.keep([f"k{step}"])
        parent = f"k{step}"
    assert fed_total < full_total / 3


def test_cbs_guide_scores_match_full_rescoring(base, pair, xpair):
    sp = w2s.SamplingParams(max_new_tokens=18, seed=3)
    for g in (pair, xpair, 0.5 * pair + xpair):
        res = w2s.cbs(base, g, PROMPTS, w2s.SearchParams(2, 3, 4), sp, return_all=True)
        for r in res:
            want = g.score([r.prompt] * len(r.candidates), [c.text for c in r.candidates],
                           [c.finished for c in r.candidates])
            torch.testing.assert_close(torch.tensor([c.score for c in r.candidates]), want,
                                       rtol=1e-5, atol=1e-4)

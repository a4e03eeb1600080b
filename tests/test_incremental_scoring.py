"""Incremental (KV-cached, re-tokenize from the last safe boundary) guide scoring equals full
re-scoring, for same and different tokenizers, when chunks merge across token boundaries and
when a text shrinks (a stop string cut it), and when dead cache columns are compacted away."""

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
    sess = guide.session(PROMPTS)
    parents = [0, 1]  # rows: the prompts' empty responses
    for step in range(1, max(map(len, LINEAGES))):
        owners, texts, pars = [], [], []
        for i, lineage in enumerate(LINEAGES):
            t = lineage[min(step, len(lineage) - 1)]
            # two siblings per parent: the lineage text and a variant, as CBS expands K ways
            for text in [t, t + " ok"]:
                owners.append(i)
                texts.append(text)
                pars.append(parents[i])
        ended = [v == 1 and step % 2 == 0 for _ in LINEAGES for v in range(2)]
        sess.reindex(pars)
        got, fed = sess.score(texts, ended)
        want = guide.score([PROMPTS[i] for i in owners], texts, ended)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
        assert fed > 0
        # the lineage children (variant 0) are the next parents, as selection would keep
        parents = [2 * i for i in range(len(LINEAGES))]


def test_incremental_feeds_far_fewer_tokens_than_full(pair):
    sess = pair.session(["The movie was"])
    text, fed_total, full_total = "", 0, 0
    for _ in range(12):
        text += " and then it was good"
        sess.reindex([0])
        _, fed = sess.score([text])
        _, full = pair.score_with_cost(["The movie was"], [text])
        fed_total, full_total = fed_total + fed, full_total + full
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


CHUNKS = [" a delig", "ht from st", "art to fin", "ish, and", " the plot made no sen", "se at",
          " all. I thought", " the film was bor", "ing and far", " too long;"]


@pytest.mark.parametrize("which", ["pair", "xpair"])
@pytest.mark.parametrize("compact_below", [1.0, 0.5])
def test_compacted_caches_score_like_full_rescoring(which, compact_below, request):
    """Many rounds of K=3 siblings, one kept per prompt (rotating, so crops differ per row);
    compaction (forced at 1.0: whenever any column is dead) must not change any score."""
    guide = request.getfixturevalue(which)
    sess = guide.session(PROMPTS)
    for sc in sess.scorers:
        sc.compact_below = compact_below
    parents, texts = [0, 1], ["", ""]
    for step in range(16):
        owners, kids, pars = [], [], []
        for i in range(len(PROMPTS)):
            for v in range(3):
                owners.append(i)
                kids.append(texts[i] + CHUNKS[(step + v + i) % len(CHUNKS)][: 3 + 4 * v])
                pars.append(parents[i])
        sess.reindex(pars)
        got, _ = sess.score(kids)
        want = guide.score([PROMPTS[i] for i in owners], kids)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
        pick = [3 * i + step % 3 for i in range(len(PROMPTS))]
        parents, texts = pick, [kids[j] for j in pick]
    if compact_below == 1.0:
        assert all(sc.compactions > 0 for sc in sess.scorers)
        for st in sess.states:  # compacted: no more columns than the widest row needs
            live = int(st.mask.sum(1).max())
            assert st.mask.shape[1] <= live + 3 * len(CHUNKS[0]) + 20


def test_pair_sessions_share_one_tokenization_and_respect_overrides(pair):
    """Tuned and untuned share a vocabulary, so one tail tokenizer serves both; a model whose
    ``encode_responses`` is overridden keeps tokenizing with it."""
    sess = pair.session(PROMPTS)
    assert sess.encoders[0] is not None and sess.encoders[0] is sess.encoders[1]

    class Counting(w2s.HFModel):
        calls = 0

        def encode_responses(self, texts):  # noqa: ANN001, ANN201
            Counting.calls += 1
            return super().encode_responses(texts)

    m = pair.untuned
    guide = w2s.PairGuide(pair.tuned, Counting(m.model, m.tokenizer))
    sess = guide.session(PROMPTS[:1])
    assert sess.encoders[1] is None
    for text in LINEAGES[0][1:]:
        sess.reindex([0])
        got, _ = sess.score([text])
        torch.testing.assert_close(got, pair.score(PROMPTS[:1], [text]), rtol=1e-5, atol=1e-4)
    assert Counting.calls >= len(LINEAGES[0]) - 1

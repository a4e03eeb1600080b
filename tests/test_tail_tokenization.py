"""Tail re-tokenization (``ResponseTokenizer``) gives exactly the ids of tokenizing the whole
text, for the shipped zoo tokenizers and the tiny test tokenizers; unprovable tokenizers fall
back to whole texts, and a tokenizer that breaks the rule is caught by the overlap check."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from w2s.guides.tail_tokenizer import ResponseTokenizer, same_tokenization, tail_safe

ZOO = Path(__file__).resolve().parents[1] / "src" / "w2s" / "zoo" / "models"
WORDS = ["the", "movie", "was", "a", "delight", "from", "start", "to", "finish", "plot", "I",
         "film", "boring", "and", "far", "too", "long", "x", "qwzk", "Start", "WAS"]
PUNCT = [".", ",", "!", "?", ";", ":", "-", "--", "...", "'", '"', "(", ")", "'s", "'ll", "'re",
         "n't", "$", "%", "#", "<|eos|>", "<|user|>", "<|", "|>"]
SPACES = [" ", " ", " ", "  ", "   ", "\n", "\n\n", "\t", " \n", "\n ", "\r\n", "\u00a0", "\u3000",
          "\x1c"]
OTHER = ["é", "ö", "naïve", "café", "日本語", "東京", "😀", "🎬👍", "e\u0301", "ß", "Ωμέγα", "١٢٣",
         "42", "3.14", "1,000", "\u200b", "\ufffd"]
# a text is (separator, item) pairs: mostly " word", as in prose, with every kind of oddity
SEPARATORS = st.sampled_from([" "] * 12 + SPACES + [""] * 4)
ITEMS = st.sampled_from(WORDS * 3 + PUNCT + OTHER)
TEXT = st.lists(st.tuples(SEPARATORS, ITEMS), min_size=4, max_size=60).map(
    lambda pairs: "".join(a + b for a, b in pairs))


def _tok(path):  # noqa: ANN001, ANN202
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module", params=["zoo-base", "zoo-xtuned", "tiny-a", "tiny-b"])
def tokenizer(request, tiny_paths):
    paths = {"zoo-base": ZOO / "base", "zoo-xtuned": ZOO / "xtuned",
             "tiny-a": tiny_paths["tuned"], "tiny-b": tiny_paths["xtuned"]}
    return _tok(paths[request.param])


def _full(tok, text: str) -> list[int]:  # noqa: ANN001
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _cuts(text: str, fractions: list[float]) -> list[str]:
    """The prefixes of ``text`` at the given fractions of its length (a growing lineage)."""
    return [text[: round(f * len(text))] for f in sorted(fractions)] + [text]


def test_shipped_and_tiny_tokenizers_are_tail_safe(tokenizer):
    assert tail_safe(tokenizer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, fractions=st.lists(st.floats(0, 1), min_size=1, max_size=6),
       scan=st.sampled_from([2, 3, 8, 64]))
def test_tail_tokenization_equals_full_tokenization(tokenizer, text, fractions, scan):
    enc = ResponseTokenizer(tokenizer, 1, scan=scan)
    for t in _cuts(text, fractions):
        [ids], _ = enc.encode([0], [t])
        assert ids == _full(tokenizer, t), repr(t)
    assert enc.mismatches == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stem=TEXT, tails=st.lists(TEXT, min_size=2, max_size=4), pick=st.integers(0, 3))
def test_siblings_and_shrinking_texts(tokenizer, stem, tails, pick):
    """Rows branch (siblings of one parent), swap parents, and texts may shrink or diverge."""
    enc = ResponseTokenizer(tokenizer, 2)
    enc.encode([0, 1], [stem, ""])
    texts = [stem + t for t in tails]
    ids, shared = enc.encode([0] * len(texts), texts)
    assert ids == [_full(tokenizer, t) for t in texts]
    for i, s in zip(ids, shared):
        assert i[:s] == _full(tokenizer, stem)[:s]
    nxt = [texts[pick % len(texts)][: len(stem)], texts[0] + tails[-1], stem[: len(stem) // 2]]
    ids, _ = enc.encode([pick % len(texts), 0, 1], nxt)
    assert ids == [_full(tokenizer, t) for t in nxt]
    assert enc.mismatches == 0


def test_search_like_lineage_really_uses_tails(tokenizer):
    enc = ResponseTokenizer(tokenizer, 1)
    text = ""
    for step in range(30):
        text += [" a delig", "ht from st", "art to fin", "ish, naïve café 日本", "語!\n\n  I"][step % 5]
        [ids], [shared] = enc.encode([0], [text])
        assert ids == _full(tokenizer, text)
    assert enc.tails > 20 and enc.mismatches == 0
    assert shared > 0


def _metaspace_tokenizer():  # noqa: ANN202
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(["the movie was a delight from start to finish"] * 5,
                            trainers.BpeTrainer(vocab_size=80, show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_unprovable_tokenizers_tokenize_whole_texts(tiny_paths):
    meta = _metaspace_tokenizer()
    assert not tail_safe(meta)
    enc = ResponseTokenizer(meta, 1)
    text = ""
    for chunk in [" the movie", " was a", " delight from", " start"]:
        text += chunk
        assert enc.encode([0], [text])[0] == [_full(meta, text)]
    assert enc.tails == 0
    spaced = _tok(tiny_paths["tuned"])
    spaced.add_tokens(["good film"])  # an added token holding a space may span a boundary
    assert not tail_safe(spaced)


class _LstripTokenizer:
    """A wrapper that (wrongly for tail splitting) strips leading spaces before tokenizing:
    the structural check passes, so only the overlap check can catch it."""

    def __init__(self, tok) -> None:  # noqa: ANN001
        self.tok = tok
        self.is_fast, self.backend_tokenizer = True, tok.backend_tokenizer

    def __call__(self, texts, **kw):  # noqa: ANN001, ANN003, ANN204
        return self.tok([t.lstrip(" ") for t in texts], **kw)


def test_overlap_check_catches_a_broken_rule(tiny_paths):
    tok = _LstripTokenizer(_tok(tiny_paths["tuned"]))
    enc = ResponseTokenizer(tok, 1)
    assert enc.tail_ok
    text = ""
    for chunk in ["The movie", " was a", " delight from", " start to", " finish"]:
        text += chunk
        assert enc.encode([0], [text])[0] == [tok([text], add_special_tokens=False)["input_ids"][0]]
    assert enc.mismatches == 1 and not enc.tail_ok


def test_same_tokenization_shares_only_identical_tokenizers(tiny_paths):
    a, a2, b = _tok(tiny_paths["tuned"]), _tok(tiny_paths["untuned"]), _tok(tiny_paths["xtuned"])
    assert same_tokenization(a, a2) and not same_tokenization(a, b)
    assert not same_tokenization(a, _metaspace_tokenizer())

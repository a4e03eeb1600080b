"""A guide model behind an engine (``REF@URL``) is refused, in one line, when the engine's
tokenizer is not ``REF``'s -- judged by the token ids of a probe text, not their count: two
tokenizers can cut a text into as many tokens and number them differently, and the engine
would then score other tokens than the ones w2s sends.

The engine is tests/fake_engine.py's with vLLM's ``/tokenize``, which numbers the words of a
text 1000, 1001, ... by position; the local tokenizer is a stand-in that cuts the same words
and numbers them as it is told.
"""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine

from w2s.errors import W2SError
from w2s.models.engine_lm import PROBE, EngineLM


class WordTokenizer:
    """The fake engine's words, numbered ``ids(position)``."""

    def __init__(self, ids, eos_token_id: int = 0) -> None:  # noqa: ANN001
        self.ids, self.eos_token_id = ids, eos_token_id

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [self.ids(i) for i in range(len(text.split()))]}


@pytest.fixture
def engine():
    e = FakeEngine(tokenize=True)
    yield e
    e.close()


def _guide(engine: FakeEngine, ids) -> EngineLM:  # noqa: ANN001
    lm = EngineLM(engine.url, "zoo:tuned", model="fake", timeout=2.0, max_retries=1)
    lm.tokenizer = WordTokenizer(ids)
    return lm


def test_an_engine_with_the_same_ids_scores(engine):
    lm = _guide(engine, lambda i: 1000 + i)
    [lp] = lm.token_logprobs([[5, 6]], [[7, 8]])
    assert lp.tolist() == [-1.0, -1.0]
    assert engine.tokenized == [PROBE]  # asked once, before the first score
    lm.token_logprobs([[5]], [[7]])
    assert engine.tokenized == [PROBE]


def test_an_engine_whose_ids_differ_but_not_their_count_is_refused_in_one_line(engine):
    n = len(PROBE.split())
    lm = _guide(engine, lambda i: 1000 + i + (i == 3))  # token 3: another id
    assert len(lm.tokenizer(PROBE)["input_ids"]) == n  # as many tokens as the engine's
    with pytest.raises(W2SError) as e:
        lm.token_logprobs([[5]], [[7]])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == (f"{engine.url} serves 'fake' with another tokenizer than {lm.ref!r} names "
                   f"(the probe text tokenizes to {n} tokens both there and here, but token 3 "
                   "is id 1003 there and 1004 here): serve the guide's own model, or name its "
                   "tokenizer")
    assert not engine.bodies  # refused before any scoring request


def test_an_engine_with_another_count_is_refused_in_one_line(engine):
    n = len(PROBE.split())
    lm = _guide(engine, lambda i: 1000 + i)
    words = lm.tokenizer
    lm.tokenizer = lambda text, add_special_tokens=True: {  # the same ids, and one more
        "input_ids": [*words(text)["input_ids"], 1000 + n]}
    with pytest.raises(W2SError, match=rf"^{engine.url} serves 'fake' with another tokenizer "
                       rf"than .* names \(the probe text tokenizes to {n} tokens there, "
                       rf"{n + 1} here\): serve the guide's own model, or name its tokenizer$"):
        lm.token_logprobs([[5]], [[7]])


def test_an_engine_without_tokenize_is_not_compared():
    e = FakeEngine()  # /tokenize answers 404, as engines without it do
    try:
        lm = _guide(e, lambda i: 7)
        assert lm.token_logprobs([[5]], [[7]])[0].tolist() == [-1.0]
    finally:
        e.close()

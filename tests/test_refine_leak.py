"""In-context refinement never shows a text its own weak label: the demonstrations drawn for
a block of strong-train come from strong-train, which holds the texts being labelled, and
none of a block's texts -- nor another copy of one of them -- may be among them.

The draws are made tight so that a leak could not hide: one text a block and as many shots as
there are other texts, so the demonstrations must be exactly the others; were a text allowed
among its own, almost every draw would show it. The language model is a stand-in (a word
tokenizer); ``_score_block`` is replaced by a recorder, since only the prompts matter here.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from w2s.generalise import refine
from w2s.generalise.config import Refine

TEMPLATE = "Text: {text}\nSentiment:"


class WordTokenizer:
    """Each word (with the space before it) or newline is one token, numbered as first seen."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = []
        for piece in re.findall(r" ?[^ \n]+| |\n", text):
            if piece not in self.vocab:
                self.vocab[piece] = len(self.words)
                self.words.append(piece)
            ids.append(self.vocab[piece])
        return {"input_ids": ids}

    def decode(self, ids: list[int]) -> str:
        return "".join(self.words[i] for i in ids)


class StandIn:
    tokenizer = WordTokenizer()


def _prompts(monkeypatch, texts: list[str], shots: int, block: int, seed: int = 0
             ) -> list[tuple[str, list[str]]]:
    """``(prefix, the block's texts)`` for every block ``in_context_logodds`` scores."""
    lm = StandIn()
    tok = lm.tokenizer
    head, _, tail = TEMPLATE.partition("{text}")
    n_head, n_tail = (len(tok(x, add_special_tokens=False)["input_ids"]) for x in (head, tail))
    seen: list[tuple[str, list[str]]] = []

    def record(lm, ids, queries, neg, pos):  # noqa: ANN001, ANN202
        seen.append((tok.decode(ids), [tok.decode(q[n_head: len(q) - n_tail])
                                       for q in queries]))
        return np.zeros(len(queries))

    monkeypatch.setattr(refine, "_score_block", record)
    weak = np.arange(len(texts)) % 2
    refine.in_context_logodds(lm, texts, weak, Refine(shots=shots, block=block,
                                                      template=TEMPLATE), seed)
    assert sum(len(b) for _, b in seen) == len(texts)
    return seen


def _shown(prefix: str, texts: list[str]) -> list[str]:
    """The texts ``prefix`` shows as demonstrations."""
    return [t for t in dict.fromkeys(texts) if TEMPLATE.format(text=t) in prefix]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_text_is_never_among_its_own_demonstrations(monkeypatch, seed):
    texts = ["a fine film", "the plot drags", "superb acting", "a dull script",
             "I loved it", "not worth the ticket"]
    for prefix, block in _prompts(monkeypatch, texts, shots=5, block=1, seed=seed):
        (text,) = block
        assert TEMPLATE.format(text=text) not in prefix
        assert sorted(_shown(prefix, texts)) == sorted(t for t in texts if t != text)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_text_held_twice_never_shows_its_copy(monkeypatch, seed):
    """Strong-train as a caller may give it: one text at two places. Its copy is the same
    text with the same kind of weak label, so it is never a demonstration for it."""
    texts = ["a fine film", "the plot drags", "superb acting", "a dull script",
             "a fine film", "I loved it"]
    for prefix, block in _prompts(monkeypatch, texts, shots=4, block=1, seed=seed):
        (text,) = block
        assert TEMPLATE.format(text=text) not in prefix
        if text == "a fine film":  # the four other texts, each once; never its copy
            assert prefix.count("Text: ") == 4
            assert sorted(_shown(prefix, texts)) == sorted(set(texts) - {text})


def test_blocks_of_several_texts_never_show_any_of_theirs(monkeypatch):
    texts = [f"review number {i} says {w}" for i, w in enumerate(
        ["good", "bad", "fine", "dull", "great", "awful", "fun", "slow", "neat", "weak"])]
    texts += texts[:2]  # two texts held twice
    for prefix, block in _prompts(monkeypatch, texts, shots=4, block=3):
        for text in block:
            assert TEMPLATE.format(text=text) not in prefix
        assert prefix.count("Text: ") == 4


def test_too_few_other_texts_is_one_line(monkeypatch):
    from w2s.errors import W2SError

    texts = ["a fine film", "the plot drags", "a fine film"]
    with pytest.raises(W2SError, match="refine needs 2 demonstrations outside each block"):
        _prompts(monkeypatch, texts, shots=2, block=1)

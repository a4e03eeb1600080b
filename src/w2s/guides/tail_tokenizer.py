"""Tokenizing a search's responses by re-tokenizing only a tail of each child's text.

A child's text extends its parent's; with a tokenizer whose splitting is provably local
(:func:`tail_safe`), its tokens are the parent's up to a safe boundary plus the tokens of the
rest. See :class:`ResponseTokenizer` for the proof and the check that guards it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def tail_safe(tokenizer: Any) -> bool:
    """Whether :class:`ResponseTokenizer` may re-tokenize ``tokenizer``'s texts from a boundary.

    Only a structure whose splitting we can prove local is accepted: a fast tokenizer with no
    normalizer, a ``ByteLevel`` pre-tokenizer using its built-in GPT-2 regex, a BPE model
    without dropout, and added tokens that contain no whitespace and strip nothing around them.
    Everything else (SentencePiece/``Metaspace`` tokenizers, which prepend "▁" to the start of
    a text and whose BPE may merge across spaces; custom ``Split`` regexes; normalizers that
    may look across characters; BPE dropout, which is random) re-tokenizes whole texts.
    """
    try:
        from tokenizers import models, pre_tokenizers
    except ImportError:
        return False
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None:
        return False
    try:
        pre, model = backend.pre_tokenizer, backend.model
        if backend.normalizer is not None or not isinstance(pre, pre_tokenizers.ByteLevel):
            return False
        if not pre.use_regex or not isinstance(model, models.BPE) or model.dropout is not None:
            return False
        added = backend.get_added_tokens_decoder().values()
    except AttributeError:  # an older ``tokenizers`` without these getters
        return False
    return all(not (t.lstrip or t.rstrip or t.single_word) and not any(c.isspace() for c in t.content)
               for t in added)


def _is_boundary(text: str, s: int) -> bool:
    """A safe boundary: a space right after a non-whitespace character (see ResponseTokenizer)."""
    return 0 < s < len(text) and text[s] == " " and not text[s - 1].isspace()


@dataclass(frozen=True)
class Tokenized:
    """One row's response text and its tokens (``starts``: char offset where each begins)."""

    text: str
    ids: list[int]
    starts: list[int]


@dataclass(frozen=True)
class _Tail:
    """Re-tokenize from char ``b0`` (token ``k0``); tokens ``[k0, k1)`` (chars ``[b0, b1)``)
    are re-derived and must match the parent's."""

    b0: int
    k0: int
    b1: int
    k1: int


class ResponseTokenizer:
    """Tokenizes a search's responses, re-tokenizing only a tail of each child's text.

    Each row remembers its text, token ids and token start offsets. A child whose text extends
    its parent's (true in search, except when a stop string cuts a text or a multi-byte
    character completes) is tokenized as ``parent.ids[:k0] + tokenize(text[b0:])``, where
    ``b0`` is the parent's second-to-last safe boundary; anything else is tokenized whole.

    **Safe boundary:** a char position ``b`` with ``text[b] == " "`` and ``text[b-1]`` not
    whitespace, in a :func:`tail_safe` tokenizer. Why the split is exact there: added tokens
    (matched first, leftmost-longest) contain no whitespace, so none spans ``b``. The GPT-2
    regex (``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``)
    splits pieces that are whitespace only, or a run of one non-whitespace class with at most
    one space *first*; so the piece holding ``text[b-1]`` cannot hold the space at ``b`` and
    ends exactly at ``b``, and deciding it reads no character past ``b``. The regex has no
    lookbehind or anchors, so matching from ``b`` gives the same pieces as matching the
    substring ``text[b:]``; ``add_prefix_space`` adds nothing to a piece starting with a space;
    BPE then merges inside pieces only. So ``tokens(text) == tokens(text[:b]) +
    tokens(text[b:])``, and ``tokens(text[:b])`` is the parent's ``ids[:k0]`` because the
    parent's text has the same ``text[:b+1]``. (Python's ``isspace`` covers every regex ``\\s``
    character, so "not whitespace" is conservative.)

    **Check:** the tail starts one safe boundary earlier than needed, so its first tokens
    (chars ``[b0, b1)``) are tokenized twice, once in the parent's text and once in the tail;
    they must agree (ids and offsets) and a token must start at ``b1``. A disagreement means the
    proof's premises do not hold for this tokenizer: tail mode is switched off for good and the
    batch is re-tokenized whole.
    """

    def __init__(self, tokenizer: Any, roots: int, *, scan: int = 64) -> None:
        self.tok = tokenizer
        self.tail_ok = tail_safe(tokenizer)
        self.scan = scan  # how many trailing tokens to search for boundaries
        self.rows = [Tokenized("", [], [])] * roots
        self.tails = self.fulls = self.mismatches = 0  # counters, for tests and profiling

    def encode(self, parents: Sequence[int], texts: Sequence[str]
               ) -> tuple[list[list[int]], list[int]]:
        """Tokens of each child ``texts[j]`` of row ``parents[j]``; the children become the
        rows. Also returns, per child, a count of leading tokens known to equal its parent's."""
        plans = [self._plan(self.rows[p], t) for p, t in zip(parents, texts)]
        rows, shared = self._tails(parents, texts, plans)
        whole = [j for j, r in enumerate(rows) if r is None]
        for j, (ids, starts) in zip(whole, self._tokenize([texts[j] for j in whole])):
            rows[j] = Tokenized(texts[j], ids, starts)
        self.tails += len(texts) - len(whole)
        self.fulls += len(whole)
        self.rows = rows  # type: ignore[assignment]
        return [r.ids for r in self.rows], shared

    def _tails(self, parents: Sequence[int], texts: Sequence[str],
               plans: list[_Tail | None]) -> tuple[list[Tokenized | None], list[int]]:
        """Tail-tokenize the planned rows; all None (whole re-tokenization) on a mismatch."""
        rows: list[Tokenized | None] = [None] * len(texts)
        shared = [0] * len(texts)
        todo = [j for j, p in enumerate(plans) if p is not None]
        got = self._tokenize([texts[j][plans[j].b0:] for j in todo])  # type: ignore[union-attr]
        for j, (ids, starts) in zip(todo, got):
            plan = plans[j]
            assert plan is not None
            rows[j] = _splice(self.rows[parents[j]], texts[j], plan, ids, starts)
            if rows[j] is None:
                self.mismatches += 1
                self.tail_ok = False
                return [None] * len(texts), [0] * len(texts)
            shared[j] = plan.k1
        return rows, shared

    def _plan(self, row: Tokenized, text: str) -> _Tail | None:
        """The parent's last two safe boundaries, if the child extends the parent's text."""
        if not self.tail_ok or not row.text or not text.startswith(row.text):
            return None
        found: list[tuple[int, int]] = []
        for k in range(len(row.ids) - 1, max(0, len(row.ids) - 1 - self.scan), -1):
            if _is_boundary(row.text, row.starts[k]):
                found.append((row.starts[k], k))
                if len(found) == 2:
                    (b1, k1), (b0, k0) = found
                    return _Tail(b0, k0, b1, k1)
        return None

    def _tokenize(self, texts: list[str]) -> list[tuple[list[int], list[int]]]:
        """``(ids, starts)`` per text, with the same call as ``HFModel.encode_responses`` (so
        the ids are the same); offsets only in tail mode (slow tokenizers have none)."""
        if not texts:
            return []
        if not self.tail_ok:
            enc = self.tok(texts, add_special_tokens=False)["input_ids"]
            return [(list(ids), []) for ids in enc]
        enc = self.tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        return [(list(ids), [s for s, _ in offs])
                for ids, offs in zip(enc["input_ids"], enc["offset_mapping"])]


def _splice(parent: Tokenized, text: str, plan: _Tail, ids: list[int],
            starts: list[int]) -> Tokenized | None:
    """``parent.ids[:k0]`` + the tail's tokens, if the doubly tokenized span agrees."""
    n = plan.k1 - plan.k0
    if len(ids) <= n or ids[:n] != parent.ids[plan.k0:plan.k1] or starts[n] != plan.b1 - plan.b0:
        return None
    if starts[:n] != [s - plan.b0 for s in parent.starts[plan.k0:plan.k1]]:
        return None
    return Tokenized(text, parent.ids[:plan.k0] + ids,
                     parent.starts[:plan.k0] + [s + plan.b0 for s in starts])


def same_tokenization(a: Any, b: Any) -> bool:
    """Whether tokenizers ``a`` and ``b`` surely give the same ids for every text: the same
    object, or two tail-safe tokenizers of one class whose backends serialize identically (a
    guide pair usually shares its vocabulary, so one tokenization then serves both models)."""
    if a is b:
        return True
    if type(a) is not type(b) or not (tail_safe(a) and tail_safe(b)):
        return False
    return (getattr(a, "split_special_tokens", None) == getattr(b, "split_special_tokens", None)
            and a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str())

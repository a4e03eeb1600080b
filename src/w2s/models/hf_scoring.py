"""Incremental response scoring with a KV cache per candidate (for guides).

During search a guide scores every candidate's *whole* response each round, but a child shares
all but its last chunk with its parent. Here each candidate keeps a KV-cache row over its
prompt + response (in the guide model's own tokenization) and the log-probabilities of its
response tokens. A child's tokens come from :class:`ResponseTokenizer`, which re-tokenizes only
a tail of the text after a provably safe boundary (falling back to the whole text); the scorer
finds the longest common token prefix ``c`` with its parent (BPE may merge the parent's last
token with the new text, so ``c`` can be shorter than the parent), drops the parent's tokens
from ``c - 1`` on, and feeds only ``ids[c-1:]``. The result equals full re-scoring (tests check
1e-4).

Rows are cropped by masking, not by slicing, so candidates with different crop points share
one rectangular cache: the attention mask marks each row's live columns, and ``position_ids``
count live tokens, so every row sees the positions it would see alone. Dead columns pile up
over a long search (attention still reads them), so when the widest row's live columns fill
less than ``compact_below`` of the cache, the cache is rebuilt holding only live columns (see
:meth:`IncrementalScorer._compact`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class RowInfo:
    ids: list[int]  # prompt + response tokens, in this model's tokenization
    cols: list[int]  # cache column of each token
    prompt_len: int
    lps: list[float]  # log-prob of each response token (ids[prompt_len:])


@dataclass
class ScoreState:
    cache: Any
    mask: torch.Tensor  # (R, T) 1 = live column
    rows: list[RowInfo]


def _lcp(a: Sequence[int], b: Sequence[int], lo: int = 0) -> int:
    """Longest common prefix of ``a`` and ``b``, given that their first ``lo`` items agree."""
    n = min(len(a), len(b))
    i = min(lo, n)
    while i < n and a[i] == b[i]:
        i += 1
    return i


# ------------------------------------------------------------------ tail tokenization
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


# ------------------------------------------------------------------ incremental scoring
def _compactable(cache: Any, width: int) -> bool:
    """Whether every layer of ``cache`` is a plain ``DynamicLayer`` or this project's growing
    layer (:mod:`w2s.models.kv_cache`) holding ``width`` columns: then replacing its
    ``keys``/``values`` is all compaction needs. Other layers (sliding, quantized, static)
    keep state we would have to rebuild too, so they are only ever cropped by masking."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return False
    from w2s.models import kv_cache

    layers = getattr(cache, "layers", None)
    if not layers:
        return False
    for layer in layers:
        kind = type(layer)
        if kind is not DynamicLayer and not (issubclass(kind, DynamicLayer)
                                             and kind.__module__ == kv_cache.__name__):
            return False
        k = layer.keys
        if not layer.is_initialized or k is None or k.dim() != 4 or k.shape[-2] != width:
            return False
    return True


def _gather_columns(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``out[j, h, t] = x[rows[j, t], h, cols[j, t]]`` for ``x`` (R0, H, T, D), indices (R, L):
    one copy, rows and columns selected together."""
    heads = torch.arange(x.shape[1], device=x.device).view(1, -1, 1)
    return x[rows.unsqueeze(1), heads, cols.unsqueeze(1)]


class IncrementalScorer:
    """Scores responses of one model incrementally; see the module docstring.

    ``compact_below``: compact the cache when the widest row's live columns are fewer than this
    fraction of its width (0 never compacts; 1 compacts whenever a column is dead).
    """

    def __init__(self, model: Any, *, compact_below: float = 0.5) -> None:  # an HFModel
        self.m = model
        self.compact_below = compact_below
        self.compactions = 0  # a counter, for tests and profiling

    @torch.inference_mode()
    def open(self, prompt_ids: list[list[int]]) -> ScoreState:
        st = self.m.start(prompt_ids)
        width = st.mask.shape[1]
        rows = [RowInfo(list(p), list(range(width - len(p), width)), len(p), []) for p in prompt_ids]
        return ScoreState(st.cache, st.mask, rows)

    @torch.inference_mode()
    def extend(self, st: ScoreState, parents: Sequence[int], targets: Sequence[list[int]],
               shared: Sequence[int] | None = None) -> tuple[ScoreState, list[float], int]:
        """Child ``j`` = parent row ``parents[j]`` re-scored as prompt + ``targets[j]``.

        ``shared[j]`` (optional) counts leading tokens of ``targets[j]`` known to equal the
        parent's response tokens, so the common-prefix search skips them. Returns the new
        state (one row per child), each child's response log-prob sum, and the number of
        tokens fed.
        """
        plans = [self._plan(st.rows[p], resp, shared[j] if shared is not None else 0)
                 for j, (p, resp) in enumerate(zip(parents, targets))]
        cache, mask, kept = self._select(st, parents, plans)
        feeds = [full[start:] for _, full, start in plans]
        width = mask.shape[1]  # the new tokens' columns start here
        cache, lp, mask = self._feed(cache, mask, feeds, [start for _, _, start in plans])
        rows, sums = [], []
        for j, (info, full, start) in enumerate(plans):
            keep = max(0, start + 1 - info.prompt_len)  # response tokens with index <= start
            lps = info.lps[:keep] + lp[j, : len(feeds[j]) - 1].tolist()[
                max(0, info.prompt_len - start - 1):]
            rows.append(RowInfo(full, kept[j] + list(range(width, width + len(feeds[j]))),
                                info.prompt_len, lps))
            sums.append(math.fsum(lps))
        return ScoreState(cache, mask, rows), sums, sum(map(len, feeds))

    @staticmethod
    def _plan(info: RowInfo, resp: Sequence[int], shared: int) -> tuple[RowInfo, list[int], int]:
        """``(parent row, prompt + response, start)``: keep tokens ``[0, start)``, re-feed from
        ``start`` (at least one token, whose logits predict the first new one)."""
        full = info.ids[: info.prompt_len] + list(resp)
        start = max(1, _lcp(info.ids, full, info.prompt_len + shared)) - 1
        return info, full, min(start, len(full) - 1)

    def _select(self, st: ScoreState, parents: Sequence[int],
                plans: list[tuple[RowInfo, list[int], int]]
                ) -> tuple[Any, torch.Tensor, list[list[int]]]:
        """Each child's copy of its parent's cache row, cropped to the columns of its first
        ``start`` tokens: by masking (after a row reorder), or by compaction when dead columns
        dominate. Returns the cache, its (R, T) mask and each child's kept columns (renumbered
        by compaction)."""
        kept = [info.cols[:start] for info, _, start in plans]
        width = st.mask.shape[1]
        live = max((len(k) for k in kept), default=0)
        if live < self.compact_below * width and _compactable(st.cache, width):
            return self._compact(st, parents, kept)
        index = torch.as_tensor(list(parents), dtype=torch.long, device=self.m.device)
        st.cache.reorder_cache(index)
        mask = st.mask.index_select(0, index).clone()  # (R, T)
        for j, (info, _, start) in enumerate(plans):
            dead = info.cols[start:]
            if dead:
                mask[j, dead] = 0
        return st.cache, mask, kept

    def _compact(self, st: ScoreState, parents: Sequence[int], kept: list[list[int]]
                 ) -> tuple[Any, torch.Tensor, list[list[int]]]:
        """Rebuild the cache with only each child's kept columns, right-aligned (left padding,
        masked). Attention over the same live keys, at the same ``position_ids`` (keys carry
        their positions: RoPE is applied before caching, absolute embeddings before the
        layers), gives the same result; row selection and compaction are one gather."""
        dev = self.m.device
        width = max(1, max((len(k) for k in kept), default=0))
        rows = torch.as_tensor(list(parents), dtype=torch.long).view(-1, 1).expand(-1, width)
        cols = torch.zeros((len(kept), width), dtype=torch.long)
        mask = torch.zeros((len(kept), width), dtype=st.mask.dtype)
        for j, k in enumerate(kept):
            if k:
                cols[j, width - len(k):] = torch.as_tensor(k, dtype=torch.long)
                mask[j, width - len(k):] = 1
        rows, cols = rows.to(dev), cols.to(dev)
        for layer in st.cache.layers:
            layer.keys = _gather_columns(layer.keys, rows, cols)
            layer.values = _gather_columns(layer.values, rows, cols)
        self.compactions += 1
        return st.cache, mask.to(dev), [list(range(width - len(k), width)) for k in kept]

    def _feed(self, cache: Any, mask: torch.Tensor, feeds: list[list[int]], starts: list[int]
              ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """One forward pass over every row's feed (right-padded); returns the cache, the
        ``(R, m-1)`` log-probs of each fed token after the first, and the grown mask."""
        dev = self.m.device
        m = max(len(f) for f in feeds)
        ids = torch.full((len(feeds), m), self.m.pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(feeds), m), dtype=mask.dtype)
        pos = torch.zeros((len(feeds), m), dtype=torch.long)
        for j, (f, start) in enumerate(zip(feeds, starts)):
            ids[j, : len(f)] = torch.tensor(f)
            new_mask[j, : len(f)] = 1
            pos[j] = start + torch.arange(m)  # live tokens before: ``start``
        full_mask = torch.cat([mask, new_mask.to(dev)], dim=1)  # (R, T + m)
        out = self.m.model(input_ids=ids.to(dev), attention_mask=full_mask,
                           position_ids=pos.to(dev), past_key_values=cache, use_cache=True)
        logits = out.logits.float()  # (R, m, V)
        nxt = ids[:, 1:].to(dev)
        lp = (logits[:, :-1].gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
              - logits[:, :-1].logsumexp(-1)).cpu()  # (R, m-1): log p(feed[i+1])
        return out.past_key_values, lp, full_mask

"""Incremental response scoring with a KV cache per candidate (for guides).

During search a guide scores every candidate's *whole* response each round, but a child shares
all but its last chunk with its parent. Here each candidate keeps a KV-cache row over its
prompt + response (in the guide model's own tokenization) and the log-probabilities of its
response tokens. A child's tokens come from :class:`~w2s.guides.tail_tokenizer.ResponseTokenizer`, which re-tokenizes only
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

from w2s.models import kv_cache
from w2s.models.hf import HFModel


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


def _compactable(cache: Any, width: int) -> bool:
    """Whether every layer of ``cache`` is a plain ``DynamicLayer`` or this project's growing
    layer (:mod:`w2s.models.kv_cache`) holding ``width`` columns: then replacing its
    ``keys``/``values`` is all compaction needs. Other layers (sliding, quantized, static)
    keep state we would have to rebuild too, so they are only ever cropped by masking."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return False

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

    def __init__(self, model: HFModel, *, compact_below: float = 0.5) -> None:
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
        logits, cache = self.m.forward_cached(ids.to(dev), full_mask, pos.to(dev), cache)
        logits = logits.float()  # (R, m, V)
        nxt = ids[:, 1:].to(dev)
        lp = (logits[:, :-1].gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
              - logits[:, :-1].logsumexp(-1)).cpu()  # (R, m-1): log p(feed[i+1])
        return cache, lp, full_mask

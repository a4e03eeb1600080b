"""Incremental response scoring with a KV cache per candidate (for guides).

During search a guide scores every candidate's *whole* response each round, but a child shares
all but its last chunk with its parent. Here each candidate keeps a KV-cache row over its
prompt + response (in the guide model's own tokenization) and the log-probabilities of its
response tokens. A child re-tokenizes its full text, finds the longest common token prefix
``c`` with its parent (the last "safe boundary": BPE may merge the parent's last token with the
new text, so ``c`` can be shorter than the parent), drops the parent's tokens from ``c - 1``
on, and feeds only ``ids[c-1:]``. The result equals full re-scoring (tests check 1e-4).

Rows are cropped by masking, not by slicing, so candidates with different crop points share
one rectangular cache: the attention mask marks each row's live columns, and ``position_ids``
count live tokens, so every row sees the positions it would see alone.
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


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class IncrementalScorer:
    """Scores responses of one model incrementally; see the module docstring."""

    def __init__(self, model: Any) -> None:  # an HFModel
        self.m = model

    @torch.inference_mode()
    def open(self, prompt_ids: list[list[int]]) -> ScoreState:
        st = self.m.start(prompt_ids)
        width = st.mask.shape[1]
        rows = [RowInfo(list(p), list(range(width - len(p), width)), len(p), []) for p in prompt_ids]
        return ScoreState(st.cache, st.mask, rows)

    @torch.inference_mode()
    def extend(self, st: ScoreState, parents: Sequence[int],
               targets: Sequence[list[int]]) -> tuple[ScoreState, list[float], int]:
        """Child ``j`` = parent row ``parents[j]`` re-scored as prompt + ``targets[j]``.

        Returns the new state (one row per child), each child's response log-prob sum, and the
        number of tokens fed.
        """
        dev = self.m.device
        index = torch.as_tensor(list(parents), dtype=torch.long, device=dev)
        st.cache.reorder_cache(index)
        mask = st.mask.index_select(0, index).clone()  # (R, T)
        width = mask.shape[1]
        feeds, infos = [], []
        for j, (p, resp) in enumerate(zip(parents, targets)):
            info = st.rows[p]
            full = info.ids[: info.prompt_len] + list(resp)
            start = max(1, _lcp(info.ids, full)) - 1  # keep tokens [0, start), re-feed from start
            start = min(start, len(full) - 1)
            dead = info.cols[start:]
            if dead:
                mask[j, dead] = 0
            feeds.append(full[start:])
            infos.append((info, full, start))
        m = max(len(f) for f in feeds)
        ids = torch.full((len(feeds), m), self.m.pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(feeds), m), dtype=mask.dtype)
        pos = torch.zeros((len(feeds), m), dtype=torch.long)
        for j, (f, (_, _, start)) in enumerate(zip(feeds, infos)):
            ids[j, : len(f)] = torch.tensor(f)
            new_mask[j, : len(f)] = 1
            pos[j] = start + torch.arange(m)
        full_mask = torch.cat([mask, new_mask.to(dev)], dim=1)  # (R, T + m)
        out = self.m.model(input_ids=ids.to(dev), attention_mask=full_mask,
                           position_ids=pos.to(dev), past_key_values=st.cache, use_cache=True)
        logits = out.logits.float()  # (R, m, V)
        nxt = ids[:, 1:].to(dev)
        lp = (logits[:, :-1].gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
              - logits[:, :-1].logsumexp(-1)).cpu()  # (R, m-1): log p(feed[i+1])
        rows, sums = [], []
        for j, (info, full, start) in enumerate(infos):
            keep = max(0, start + 1 - info.prompt_len)  # response tokens with index <= start
            lps = info.lps[:keep] + lp[j, : len(feeds[j]) - 1].tolist()[
                max(0, info.prompt_len - start - 1):]
            rows.append(RowInfo(full, info.cols[:start] + list(range(width, width + len(feeds[j]))),
                                info.prompt_len, lps))
            sums.append(math.fsum(lps))
        return ScoreState(out.past_key_values, full_mask, rows), sums, sum(map(len, feeds))

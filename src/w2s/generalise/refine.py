"""Refinement (Somerstep et al. 2024): the strong model relabels strong-train in context.

Naive fine-tuning on weak labels teaches the strong model the weak model's mistakes; the
transfer-learning view says the strong model already holds the concept, and a few
weak-labelled examples in context are enough to elicit it. So each text of strong-train is
shown after ``shots`` weak-labelled demonstrations::

    Text: <demo 1>
    Sentiment: positive

    ...
    Text: <the text>
    Sentiment:

and its refined label is the strong model's log-odds of the two label words' first tokens.
The demonstrations are drawn from strong-train, one draw per block of ``block`` texts of about
one length, whose prompt prefix is encoded once and shared (its KV cache copied to every row);
a draw never holds a text of its block, nor another copy of one (it would see its own weak
label; strong-train as loaded holds each text once, but a caller may give one twice).
In-context log-odds carry a label-word bias, so they are centred at the quantile that gives
the weak labels' class balance (the same balance the auxiliary confidence loss assumes)
before the sigmoid; no ground truth is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from w2s.errors import W2SError
from w2s.generalise.config import Refine


def label_tokens(tok: Any, words: Sequence[str]) -> tuple[int, int]:
    """The first token of " word" for each label word; they must differ."""
    ids = [tok(" " + w.strip(), add_special_tokens=False)["input_ids"] for w in words]
    if not all(ids) or ids[0][0] == ids[1][0]:
        raise W2SError(f"the label words {list(words)} share their first token in this "
                       "tokenizer; choose words that start differently (refine.words)")
    return ids[0][0], ids[1][0]


def demonstrations(n: int, block: Sequence[int], shots: int, rng: np.random.Generator
                   ) -> list[int]:
    """``shots`` indices of ``range(n)`` drawn without replacement, none of them in ``block``."""
    if shots == 0:
        return []
    pool = np.setdiff1d(np.arange(n), np.asarray(block))
    if len(pool) < shots:
        raise W2SError(f"refine needs {shots} demonstrations outside each block of texts but "
                       f"strong-train leaves {len(pool)}; lower refine.shots or refine.block")
    return rng.choice(pool, size=shots, replace=False).tolist()


def prompt(template: str, text: str) -> str:
    return template.replace("{text}", text)


@torch.inference_mode()
def in_context_logodds(lm: Any, texts: Sequence[str], weak: np.ndarray, method: Refine,
                       seed: int, *, max_tokens: int = 128,
                       advance: Callable[[int], None] | None = None) -> np.ndarray:
    """Each text's log-odds of class 1 under the strong model ``lm`` (an
    :class:`~w2s.models.hf.HFModel`), with ``method.shots`` texts and their weak 0/1 labels
    ``weak`` in context."""
    tok = lm.tokenizer
    neg, pos = label_tokens(tok, method.words)
    rng = np.random.default_rng(seed)
    words = [" " + w.strip() for w in method.words]
    head, _, tail = method.template.partition("{text}")
    head_ids, tail_ids = (list(tok(x, add_special_tokens=False)["input_ids"]) for x in (head, tail))
    queries = [head_ids + list(tok(t, add_special_tokens=False)["input_ids"])[:max_tokens]
               + tail_ids for t in texts]
    if method.labels == "shuffled":  # the control: labels that say nothing of their text
        weak = np.random.default_rng(seed + 2).permutation(weak)
    out = np.empty(len(texts))
    # blocks of texts of about one length (little padding); the draw breaks ties
    shuffled = np.random.default_rng(seed + 1).permutation(len(texts))
    order = shuffled[np.argsort([len(queries[i]) for i in shuffled], kind="stable")]
    copies: dict[str, list[int]] = {}  # each text's places (a text may be given twice)
    for i, t in enumerate(texts):
        copies.setdefault(t, []).append(i)
    for lo in range(0, len(texts), method.block):
        block = order[lo: lo + method.block].tolist()
        held = [j for i in block for j in copies[texts[i]]]  # the block's texts, every copy
        demos = demonstrations(len(texts), held, method.shots, rng)
        prefix = "".join(prompt(method.template, texts[d]) + words[int(weak[d])] + "\n\n"
                         for d in demos)
        ids = list(tok(prefix, add_special_tokens=True)["input_ids"])
        out[block] = _score_block(lm, ids, [queries[i] for i in block], neg, pos)
        if advance is not None:
            advance(len(block))
    return out


def _score_block(lm: Any, ids: list[int], queries: list[list[int]], neg: int, pos: int
                 ) -> np.ndarray:
    """log p(pos) - log p(neg) after the prefix ``ids`` + each query; the prefix encoded
    once."""
    from w2s.models.kv_cache import set_spare

    if not ids:  # zero-shot, and no BOS token: the queries alone, left-padded
        lp = lm.start(queries).logits.log_softmax(-1)
        return (lp[:, pos] - lp[:, neg]).cpu().double().numpy()
    state = lm.start([ids])
    cache = state.cache
    width = max(len(q) for q in queries)
    set_spare(cache, width)
    cache.reorder_cache(torch.zeros(len(queries), dtype=torch.long, device=lm.device))
    dev = lm.device
    q = torch.full((len(queries), width), lm.pad_id, dtype=torch.long)
    qmask = torch.zeros_like(q)
    for i, s in enumerate(queries):  # left padding: every query ends in the last column
        q[i, width - len(s):] = torch.tensor(s)
        qmask[i, width - len(s):] = 1
    mask = torch.cat([torch.ones((len(queries), len(ids)), dtype=torch.long), qmask], 1)
    positions = len(ids) + (qmask.cumsum(1) - 1).clamp(min=0)  # (B, T): as if unpadded
    logits, _ = lm.forward_cached(q.to(dev), mask.to(dev), positions.to(dev), cache, keep=1)
    last = logits[:, -1].float()  # (B, V): the next token after each whole query
    lp = last.log_softmax(-1)
    return (lp[:, pos] - lp[:, neg]).cpu().double().numpy()


def refined_probs(logodds: np.ndarray, weak_share: float) -> np.ndarray:
    """Soft labels from in-context log-odds, centred so that the share of texts above 1/2
    equals ``weak_share`` (the weak labels' positive share)."""
    share = min(max(weak_share, 0.0), 1.0)
    centre = float(np.quantile(logodds, 1.0 - share))
    return 1.0 / (1.0 + np.exp(-(logodds - centre)))

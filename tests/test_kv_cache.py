"""The growing KV cache gives bit-identical logits to transformers' DynamicCache, also across
candidate copies/drops (reorder_cache) and multi-token appends."""

import inspect

import torch
from transformers.cache_utils import DynamicCache

from w2s.models.kv_cache import growing_cache, set_spare

STEPS, REORDER_AT = 80, 61


def _run(model, cache):  # noqa: ANN001, ANN202
    """Decode 80 steps with a reorder at step 61; returns the logits, the cache, and the
    capacity of layer 0's key buffer after every step (growing cache only)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    arg = ("cache" if "cache" in inspect.signature(model.forward).parameters
           else "past_key_values")  # transformers 5 renamed it
    out = model(input_ids=ids, attention_mask=mask, use_cache=True, **{arg: cache})
    cache, logits, capacity = out[arg], [out.logits[:, -1]], []
    for t in range(STEPS):
        if t == REORDER_AT:  # copy row 0 twice, drop row 2 (as a search expands and prunes)
            idx = torch.tensor([0, 0, 1])
            set_spare(cache, 1)  # so the appends after the reorder must grow the buffer again
            cache.reorder_cache(idx)
            mask = mask[idx]
        n = 3 if t % 10 == 0 else 1  # multi-token appends too
        new = torch.randint(5, 300, (3, n), generator=g)
        mask = torch.cat([mask, torch.ones_like(new)], 1)
        pos = mask.sum(-1, keepdim=True) - n + torch.arange(n)
        out = model(input_ids=new, attention_mask=mask, position_ids=pos, use_cache=True,
                    **{arg: cache})
        cache = out[arg]
        logits.append(out.logits[:, -1])
        buf = getattr(cache.layers[0], "_kbuf", None)
        capacity.append(None if buf is None else buf.shape[-2])
    return torch.stack(logits), cache, capacity


def _growths(capacity: list[int]) -> list[int]:
    """Steps at which the buffer got bigger than it was."""
    return [t for t in range(1, len(capacity)) if capacity[t] > capacity[t - 1]]


def test_growing_cache_matches_dynamic_cache(base, pair):
    for model in (base.model, pair.tuned.model):
        with torch.inference_mode():
            want, c1, _ = _run(model, DynamicCache())
            fresh = growing_cache()
            assert fresh is not None  # else this would compare DynamicCache with itself
            got, c2, capacity = _run(model, fresh)
        assert type(c2.layers[0]).__name__ == "GrowingLayer"
        assert torch.equal(want, got)
        assert c1.get_seq_length() == c2.get_seq_length() == 6 + STEPS + 2 * (STEPS // 10)
        # the buffer grew past its first 64 columns before the reorder, and again after it
        grew = _growths(capacity)
        assert any(t < REORDER_AT for t in grew) and any(t > REORDER_AT for t in grew)


def test_growing_cache_works_for_gpt2(xpair):
    with torch.inference_mode():
        want, _, _ = _run(xpair.tuned.model, DynamicCache())
        got, c2, capacity = _run(xpair.tuned.model, growing_cache())
    assert type(c2.layers[0]).__name__ == "GrowingLayer" and _growths(capacity)
    assert torch.equal(want, got)


def test_reorders_keep_spare_room_so_appends_do_not_reallocate():
    """Regression: a reorder used to take its spare room out of the old buffer, so capacity
    shrank round after round and every chunk's first append reallocated (a second copy)."""
    cache = growing_cache()
    k = torch.randn(4, 2, 10, 8)
    cache.update(k, k.clone(), 0)
    layer = cache.layers[0]
    for _ in range(5):  # rounds: reorder with room for a 5-token chunk, then append 5 tokens
        set_spare(cache, 5)
        cache.reorder_cache(torch.tensor([0, 0, 1, 3]))
        ptr = layer._kbuf.data_ptr()
        for _ in range(5):
            new = torch.randn(4, 2, 1, 8)
            keys, values = cache.update(new, new.clone(), 0)
            assert torch.equal(keys[:, :, -1:], new)
        assert layer._kbuf.data_ptr() == ptr  # no reallocation inside the chunk
    assert cache.get_seq_length() == 10 + 5 * 5
    kept = layer.keys.clone()
    cache.reorder_cache(torch.tensor([2, 1]))
    assert torch.equal(layer.keys, kept[[2, 1]]) and layer._kbuf.shape[-2] == 35 + 5

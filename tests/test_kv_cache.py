"""The growing KV cache gives bit-identical logits to transformers' DynamicCache, also across
candidate copies/drops (reorder_cache) and multi-token appends."""

import torch
from transformers.cache_utils import DynamicCache

from w2s.models.kv_cache import growing_cache


def _run(model, cache):  # noqa: ANN001, ANN202
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    out = model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True)
    cache, logits = out.past_key_values, [out.logits[:, -1]]
    for t in range(70):  # past the first capacity (64) to exercise growth
        if t == 30:  # copy row 0 twice, drop row 2 (as a search expands and prunes)
            idx = torch.tensor([0, 0, 1])
            cache.reorder_cache(idx)
            mask = mask[idx]
        n = 3 if t % 10 == 0 else 1  # multi-token appends too
        new = torch.randint(5, 300, (3, n), generator=g)
        mask = torch.cat([mask, torch.ones_like(new)], 1)
        pos = mask.sum(-1, keepdim=True) - n + torch.arange(n)
        out = model(input_ids=new, attention_mask=mask, position_ids=pos, past_key_values=cache,
                    use_cache=True)
        cache = out.past_key_values
        logits.append(out.logits[:, -1])
    return torch.stack(logits), cache


def test_growing_cache_matches_dynamic_cache(base, pair):
    for model in (base.model, pair.tuned.model):
        with torch.inference_mode():
            want, c1 = _run(model, DynamicCache())
            got, c2 = _run(model, growing_cache())
        assert torch.equal(want, got)
        assert c1.get_seq_length() == c2.get_seq_length() == 6 + 7 * 3 + 63


def test_growing_cache_works_for_gpt2(xpair):
    with torch.inference_mode():
        want, _ = _run(xpair.tuned.model, DynamicCache())
        got, _ = _run(xpair.tuned.model, growing_cache())
    assert torch.equal(want, got)


def test_reorders_keep_spare_room_so_appends_do_not_reallocate():
    """Regression: a reorder used to take its spare room out of the old buffer, so capacity
    shrank round after round and every chunk's first append reallocated (a second copy)."""
    from w2s.models.kv_cache import set_spare

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

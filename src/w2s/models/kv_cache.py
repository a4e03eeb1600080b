"""A KV cache that appends into spare capacity instead of re-concatenating.

``transformers``' ``DynamicLayer.update`` does ``torch.cat([keys, new])`` at every decode step,
copying the whole cache: decoding T tokens costs O(T^2) memory traffic, which dominated long
searches on CPU (bench/naive_vs_fast.py). Here each layer keeps a buffer with spare room
(doubling when full) and returns views of its filled part; ``reorder_cache`` (used to copy,
keep and drop candidates) goes through the ``keys``/``values`` setters and simply compacts.
Outputs are bit-identical to ``DynamicCache`` (tests compare logits).
"""

from __future__ import annotations

from typing import Any

import torch


class _Growing:
    """Mixed into ``transformers``' ``DynamicLayer`` by :func:`growing_cache`: appends new
    keys/values into spare capacity (doubling when full), so a decode step copies one token,
    not the whole cache (``torch.cat`` in ``DynamicLayer`` copies all)."""

    _kbuf: torch.Tensor | None = None
    _vbuf: torch.Tensor | None = None
    _klen: int = 0
    _vlen: int = 0

    @property
    def keys(self) -> torch.Tensor | None:  # type: ignore[override]
        return None if self._kbuf is None else self._kbuf[..., : self._klen, :]

    @keys.setter
    def keys(self, v: torch.Tensor | None) -> None:
        self._kbuf, self._klen = v, (v.shape[-2] if v is not None and v.dim() >= 2 else 0)

    @property
    def values(self) -> torch.Tensor | None:  # type: ignore[override]
        return None if self._vbuf is None else self._vbuf[..., : self._vlen, :]

    @values.setter
    def values(self, v: torch.Tensor | None) -> None:
        self._vbuf, self._vlen = v, (v.shape[-2] if v is not None and v.dim() >= 2 else 0)

    @staticmethod
    def _append(buf, length, new):  # noqa: ANN001, ANN205
        need = length + new.shape[-2]
        if buf is None or buf.dim() < 2 or need > buf.shape[-2]:
            cap = max(need, 2 * (buf.shape[-2] if buf is not None and buf.dim() >= 2 else 0), 64)
            grown = new.new_empty((*new.shape[:-2], cap, new.shape[-1]))
            if length:
                grown[..., :length, :] = buf[..., :length, :]
            buf = grown
        buf[..., length:need, :] = new
        return buf, need

    spare: int = 64
    """Columns of spare room a reorder keeps (set by :func:`set_spare` to the next chunk's
    length: copying more is wasted memory traffic, copying less costs a second copy)."""

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Select rows into a fresh buffer holding the filled part plus ``spare`` free
        columns, in one copy: the next chunk's appends then need no reallocation (taking the
        room from the old buffer instead would shrink it round after round)."""
        if self._kbuf is not None and self._kbuf.dim() >= 2 and self._klen:
            idx = beam_idx.to(self._kbuf.device)
            self._kbuf = self._gather(self._kbuf, self._klen, idx)
            self._vbuf = self._gather(self._vbuf, self._vlen, idx)

    def _gather(self, buf: torch.Tensor, length: int, idx: torch.Tensor) -> torch.Tensor:
        out = buf.new_empty((idx.shape[0], *buf.shape[1:-2], length + self.spare,
                             buf.shape[-1]))
        torch.index_select(buf[..., :length, :], 0, idx, out=out[..., :length, :])
        return out

    def update(self, key_states, value_states, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._kbuf, self._klen = self._append(self._kbuf, self._klen, key_states)
        self._vbuf, self._vlen = self._append(self._vbuf, self._vlen, value_states)
        return self.keys, self.values


def growing_cache() -> Any | None:
    """A ``DynamicCache`` whose layers grow by doubling; None if this transformers lacks the hook."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:
        return None

    class GrowingLayer(_Growing, DynamicLayer):  # type: ignore[misc]
        pass

    cache = DynamicCache()
    if not hasattr(cache, "layer_class_to_replicate") or cache.layers:
        return None
    cache.layer_class_to_replicate = GrowingLayer
    return cache


def set_spare(cache: Any, columns: int) -> None:
    """How much spare room the next ``reorder_cache`` keeps per row (growing layers only)."""
    for layer in getattr(cache, "layers", []):
        if hasattr(layer, "spare"):
            layer.spare = max(1, columns)

"""The memory plan of a search on an in-process base, made before its first forward pass:
the weights, the KV cache of the rows the search keeps, and the logits buffers, against what
is free on the base's devices (and the limit a user gave). A search that cannot fit is
refused in one line naming the knob to lower, not after minutes, out of memory.

The KV cache holds, per row and token, keys and values of every layer:
``2 * layers * kv_heads * head_dim * bytes per element``; a search keeps
``rows = prompts per call * W*K`` (CBS; N for Best-of-N) rows of ``prompt + max_new_tokens``
tokens. The logits buffers are a few float32 copies of ``rows * vocabulary``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from w2s.errors import FieldError

log = logging.getLogger("w2s.stage")
GIB = 2**30
LOGITS_COPIES = 4
"""float32 ``rows x vocabulary`` tensors alive at once while a step samples (logits, their
log-softmax, the filtered copy, the probabilities)."""


@dataclass(frozen=True)
class MemoryPlan:
    """What a search of ``rows`` rows of ``length`` tokens needs, in bytes."""

    device: str
    rows: int
    length: int
    weights: int
    kv_cache: int
    logits: int
    free: int | None
    """Free memory on the base's devices now (weights already loaded), or None: unknown."""
    limit: int | None = None
    """The most the whole plan may take (the user's memory limit), or None."""

    @property
    def search(self) -> int:
        """What the search adds to the loaded weights."""
        return self.kv_cache + self.logits

    @property
    def total(self) -> int:
        return self.weights + self.search

    def line(self) -> str:
        free = f"; {self.free / GIB:.2f} GiB free" if self.free is not None else ""
        limit = f", limit {self.limit / GIB:.2f} GiB" if self.limit is not None else ""
        return (f"memory plan on {self.device}: weights {self.weights / GIB:.2f} GiB + KV cache "
                f"{self.kv_cache / GIB:.2f} GiB ({self.rows} rows x {self.length} tokens) + "
                f"logits {self.logits / GIB:.2f} GiB = {self.total / GIB:.2f} GiB{free}{limit}")

    def check(self) -> None:
        """Refuse, naming the knob to lower, a plan over the free memory or the limit."""
        lower = "lower it, W*K (or N) or max_new_tokens"
        if self.limit is not None and self.weights > self.limit:
            raise FieldError("memory_limit", f"{self.limit / GIB:.2f} GiB is below the base's "
                             f"weights alone ({self.weights / GIB:.2f} GiB)", sep=" ")
        if self.limit is not None and self.total > self.limit:
            raise FieldError("batch_size", f"is too large for the memory limit: {self.line()}; "
                             f"{lower}")
        if self.free is not None and self.search > 0.9 * self.free:
            raise FieldError("batch_size", f"is too large here: {self.rows} candidate rows x "
                             f"{self.length} tokens need about {self.search / GIB:.1f} GiB of "
                             f"KV cache and logits on {self.device}, but only "
                             f"{self.free / GIB:.1f} GiB is free; {lower}")


def check_memory_limit(limit: Any) -> float | None:
    """A user's memory limit in GiB: a number > 0, or None for none (one check for every
    face that takes one: the Loader, an eval config)."""
    if limit is not None and (not isinstance(limit, (int, float)) or isinstance(limit, bool)
                              or not limit > 0):
        raise FieldError("memory_limit", f"must be a number of GiB > 0, got {limit!r}")
    return limit


def weight_bytes(model: Any) -> int:
    """Parameters and buffers, as loaded (their dtype's bytes)."""
    return sum(t.numel() * t.element_size()
               for t in (*model.parameters(), *model.buffers()))


def free_bytes(devices: set[torch.device]) -> int | None:
    """Free memory on ``devices`` (summed over GPUs; the CPU's available RAM), or None."""
    total = 0
    for dev in devices:
        if dev.type == "cuda":
            total += torch.cuda.mem_get_info(dev)[0]
        elif dev.type == "cpu":
            try:
                total += os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                return None
        else:
            return None
    return total


def plan_memory(model: Any, kv_bytes_per_token: int, vocab_size: int, rows: int, length: int,
                limit: int | None = None) -> MemoryPlan:
    """The plan for ``rows`` rows of ``length`` tokens on ``model`` (a ``transformers`` model,
    sharded or not)."""
    devices = {p.device for p in model.parameters()}
    shown = ", ".join(sorted(str(d) for d in devices))
    return MemoryPlan(shown, rows, length, weight_bytes(model), rows * length * kv_bytes_per_token,
                      rows * vocab_size * 4 * LOGITS_COPIES, free_bytes(devices), limit)

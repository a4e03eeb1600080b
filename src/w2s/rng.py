"""Counter-based randomness: one uniform number per (seed, prompt, slot, position).

Why not ``torch.Generator``: a shared generator makes a sample depend on how many other rows
were in the batch and in what order. Here the uniform that picks token ``t`` of candidate slot
``j`` for a prompt is a pure hash of ``(seed, prompt text, j, t)``, computed on the device with
SplitMix64. That makes outputs independent of batching, and it makes the equivalences the
design requires (docs/architecture.md; pinned by tests/test_decoding.py) hold exactly: CBS with W=K=1 draws the same numbers as plain sampling (slot 0), and CBS
with L >= max_new_tokens draws the same numbers as Best-of-N with N = W*K (slots 0..N-1).

Tokens are drawn by inverse-CDF sampling, which needs one uniform per row per step.
"""

from __future__ import annotations

import hashlib

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _signed(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an int64 tensor (wrapping arithmetic)."""
    z = x + _signed(_GOLDEN)
    z = (z ^ _shr(z, 30)) * _signed(_M1)
    z = (z ^ _shr(z, 27)) * _signed(_M2)
    return z ^ _shr(z, 31)


def mix_py(x: int) -> int:
    """Pure-Python SplitMix64 finaliser, the reference the tensor version is tested against."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return _signed(z ^ (z >> 31))


def prompt_key(seed: int, prompt: str) -> int:
    """A 64-bit key for one (seed, prompt); identical prompts with one seed share a stream."""
    h = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8, key=str(seed).encode()[:64]).digest()
    return _signed(int.from_bytes(h, "little"))


def stream_keys(prompt_keys: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Key of candidate slot ``j`` of each prompt: ``(B,) int64``."""
    return mix(prompt_keys ^ mix(slots))


def uniforms(streams: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Uniform numbers in [0, 1) as float64, one per row: ``(B,)``."""
    z = mix(streams ^ mix(positions + 0x5F3759DF))
    return _shr(z, 11).to(torch.float64) * (2.0**-53)


def engine_seed(stream: int, position: int) -> int:
    """A 31-bit seed for an engine request that continues a response of ``position`` tokens on
    random stream ``stream``: runs repeat, and each round of a search draws fresh numbers (an
    engine restarts its generator from the seed at every request)."""
    return mix_py(stream ^ mix_py(position + 0x5F3759DF)) & 0x7FFFFFFF


def sample_from_probs(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: the first token whose cumulative probability exceeds ``u``.

    ``probs`` is ``(B, V)`` (need not be normalised; zero entries are never picked),
    ``u`` is ``(B,)`` in [0, 1). Returns ``(B,)`` int64.
    """
    cdf = probs.to(torch.float64).cumsum(-1)  # (B, V)
    target = (u * cdf[:, -1]).unsqueeze(-1)  # (B, 1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return idx.clamp_(max=probs.shape[-1] - 1)

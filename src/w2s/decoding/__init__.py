"""Decoders, looked up by name. Each is a plain function
``decoder(backend, guide, prompts, <method params>, sampling) -> list[Result]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from w2s.decoding.beam import cbs
from w2s.decoding.best_of_n import best_of_n
from w2s.decoding.fusion import eft, eft_logprobs
from w2s.decoding.sampling import sample
from w2s.params import BestOfNParams, EFTParams, SearchParams


@dataclass(frozen=True)
class DecoderSpec:
    name: str
    fn: Callable[..., list]
    params: type | None
    needs_guide: bool
    summary: str


DECODERS: dict[str, DecoderSpec] = {
    "sample": DecoderSpec("sample", sample, None, False,
                          "plain sampling from the base (temperature, top-p, top-k, stop strings)"),
    "bon": DecoderSpec("bon", best_of_n, BestOfNParams, True,
                       "Best-of-N: N base samples, the guide picks the best"),
    "cbs": DecoderSpec("cbs", cbs, SearchParams, True,
                       "weak-to-strong search: chunk-level beam search (W, K, L) scored by the guide"),
    "eft": DecoderSpec("eft", eft, EFTParams, True,
                       "EFT / proxy tuning: base + beta (tuned - untuned) logits, same vocabulary"),
}

__all__ = ["DECODERS", "DecoderSpec", "best_of_n", "cbs", "eft", "eft_logprobs", "sample"]

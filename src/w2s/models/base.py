"""The small interface every base-model backend implements.

A backend is what the decoders sample from. White-box backends (``hf.py``) also expose
next-token logits for token-level methods; black-box ones raise a clear error for those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from w2s.params import SamplingParams


@dataclass
class Continuation:
    """New tokens sampled for one row, and whether the row ended by EOS or a stop string."""

    token_ids: list[int]
    ended: bool


@runtime_checkable
class Backend(Protocol):
    """What decoders need from the base model."""

    name: str

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of the prompt, formatted as the model expects (chat template or plain)."""
        ...

    def check_fits(self, prompt_ids: list[int], max_new_tokens: int) -> None:
        """Raise a one-line error if prompt + response cannot fit the model's context."""
        ...

    def response_text(self, ids: list[int], stop: tuple[str, ...]) -> str:
        """The text of a response, cut before the first stop string."""
        ...

    def sample(
        self,
        prompt_ids: list[list[int]],
        response_ids: list[list[int]],
        streams: torch.Tensor,
        max_tokens: int,
        sampling: SamplingParams,
    ) -> list[Continuation]:
        """Continue each ``prompt + response`` row by up to ``max_tokens`` tokens.

        ``streams`` (rows,) int64 names each row's random stream (see :mod:`w2s.rng`); token
        ``t`` of a response is drawn with the uniform of position ``t``, so a continuation does
        not depend on which other rows share the batch.
        """
        ...

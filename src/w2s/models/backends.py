"""A model reference becomes a backend here, and only here: :func:`load_model` (a white-box
``HFModel``, or an engine-served guide model for ``REF@URL``) and :func:`load_engine` (a base
behind an OpenAI-compatible engine). Where a reference points is :mod:`w2s.models.resolve`'s
job; a new kind of backend is added here once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2s.models.resolve import engine_ref, resolve_model


def load_model(ref: str, *, base_dir: Path | None = None, dtype: str = "auto",
               device: str = "auto", chat: bool = False, batch_size: int = 64,
               device_map: Any = None) -> Any:
    """The language model ``ref`` names: a white-box ``HFModel`` (sharded by ``device_map``
    when given), or an :class:`~w2s.models.engine_lm.EngineLM` for ``REF@URL`` (a model an
    engine serves)."""
    path = resolve_model(ref, base_dir)
    served = engine_ref(path)
    if served is not None:
        from w2s.models.engine_lm import EngineLM

        local, url, name = served
        return EngineLM(url, local, model=name, chat=chat, batch_size=batch_size)
    from w2s.models.hf import HFModel

    return HFModel.load(path, dtype=dtype, device=device, chat=chat, batch_size=batch_size,
                        **({"device_map": device_map} if device_map is not None else {}))


def load_engine(url: str, model: str, *, chat: bool = False, tokenizer: str | None = None,
                api_key: str | None = None, max_concurrency: int = 64, timeout: float = 120.0,
                max_retries: int = 6, batch_size: int = 256) -> Any:
    """A base served by an OpenAI-compatible engine at ``url`` (see
    :class:`~w2s.models.openai_api.OpenAIBackend`); ``tokenizer`` is a reference too."""
    from w2s.models.openai_api import OpenAIBackend

    return OpenAIBackend(url, model, api_key=api_key, chat=chat,
                         tokenizer=resolve_model(tokenizer) if tokenizer else None,
                         max_concurrency=max_concurrency, timeout=timeout,
                         max_retries=max_retries, batch_size=batch_size)

"""Loading ``transformers`` weights and tokenizers: device and dtype choice, one-line errors.

Shared by every white-box model w2s loads (the base, the guide's pair, reward models), so a bad
path or an unknown dtype reads the same whichever role the model plays.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from w2s.errors import FieldError, W2SError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "half": torch.float16, "float": torch.float32}
"""vLLM's names too (``half``, ``float``), so its --dtype values work here unchanged."""


def choose_device(device: str, field: str = "device") -> torch.device:
    """``device`` as torch's (``auto``: a CUDA GPU when torch sees one, else the CPU); one that
    is not here is refused naming ``field`` (``device``, ``guide_device``)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise FieldError(field, f"{device!r} is not a device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FieldError(field, f"{device!r} needs a CUDA GPU, and this machine has none "
                         "that torch can use; use cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FieldError(field, f"{device!r} is not here: there are "
                         f"{torch.cuda.device_count()} CUDA devices")
    return dev


def choose_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise W2SError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar from ``from_pretrained`` (a library call should not draw on
    its caller's terminal); transformers' own setting is restored afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            import warnings

            with warnings.catch_warnings():  # the hub's "cannot enable" when its env var is set
                warnings.simplefilter("ignore")
                hf_logging.enable_progress_bar()


def load_error(path: str, e: Exception) -> W2SError:
    """The one-line error for a model that failed to load from ``path``."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if not os.path.exists(path):
        return W2SError(f"cannot load model {path!r}: no such folder, and it could not be "
                        f"fetched as a hub id ({first})")
    return W2SError(f"cannot load model {path!r}: {first}")


def load_tokenizer(path: str, **from_pretrained: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, **from_pretrained)
    except Exception as e:  # noqa: BLE001 - any loader failure is the user's path
        raise load_error(path, e) from None


def tokenizer_fingerprint(tok: Any) -> str:
    """A digest of a tokenizer's vocabulary and special tokens: equal for the same tokenizer
    loaded from anywhere, different when any token or id differs (a dataset's texts are
    trained on by a student with the tokenizer of the base that wrote them)."""
    import hashlib
    import json

    vocab = sorted(tok.get_vocab().items())
    special = sorted(str(t) for t in tok.all_special_tokens)
    return hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()[:16]

"""Keep library progress bars and chatter off the user's terminal (CLI, demo, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator


def quiet_libraries() -> None:
    """Before ``transformers`` is imported, its environment variables are enough (it reads
    them at import), so the CLI does not import it to answer ``--help`` (0.7 s); once it is
    imported, its logging is set directly."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "transformers" not in sys.modules:
        return
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


@contextlib.contextmanager
def quiet_checkpointing_rename() -> Iterator[None]:
    """TRL 1.x and peft call transformers' ``gradient_checkpointing`` names, deprecated in
    transformers 5 for ``activation_checkpointing``: their warning, on every run, about code
    that is not ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing\S* is deprecated",
                                category=FutureWarning)
        yield

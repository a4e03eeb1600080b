"""What a build ran on, written into its ``build.json``.

Why: a retrained model is reproducible only with what decided its floating-point arithmetic --
torch's thread count (it changes the order of reductions), the library versions (kernels and
tokenizers change between releases), the platform and the seeds. Two builds that disagree can
then be told apart by this record rather than guessed at.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from typing import Any

LIBRARIES = ("torch", "transformers", "tokenizers", "trl", "numpy", "safetensors")


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch threads (None: torch's own choice), before any model is made."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def build_environment(started: float) -> dict[str, Any]:
    """Versions, threads, platform and wall minutes since ``started`` (``time.time()``)."""
    import torch

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "torch threads": torch.get_num_threads(), "versions": versions,
            "minutes": round((time.time() - started) / 60, 1)}

"""Where a model's weights go: a big base sharded over GPUs by accelerate's ``device_map``,
and the guide's small models on a device of their own.

A device map is checked before any weight loads, in one line naming ``device_map``: the
devices it names must exist here, and every parameter of the model must be placed (a map that
leaves layers out would otherwise load them nowhere, or fail deep inside accelerate).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from w2s.errors import FieldError

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
"""accelerate's placement strategies: ``auto``/``balanced`` spread layers evenly over the GPUs
(then the CPU), ``balanced_low_0`` keeps GPU 0 light (for generation's buffers),
``sequential`` fills GPU 0 first."""


def parse_device_map(value: Any, field: str = "device_map") -> str | dict[str, Any] | None:
    """A device map as a user writes it: a strategy (``auto``, ``balanced``, ...), one device
    (``cpu``, ``cuda:1``: all of the model there), a JSON object (``{"model.layers.0": 0, "": "cpu"}``; ``""`` places every module not named), a
    ``.json`` file holding one, or a mapping; None for none."""
    if value is None or isinstance(value, Mapping):
        return _check_values(dict(value), field) if value is not None else None
    if not isinstance(value, str) or not value.strip():
        raise FieldError(field, f"must be one of {', '.join(STRATEGIES)}, a JSON object or a "
                         f".json file, got {value!r}")
    text = value.strip()
    if text in STRATEGIES:
        return text
    if text == "cpu" or text == "mps" or text.startswith("cuda"):  # all of it on one device
        check_device(text, field)
        return text
    if text.endswith(".json") and not text.startswith("{"):
        try:
            with open(os.path.expanduser(text), encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise FieldError(field, f"cannot read {value!r}: {e.strerror}") from None
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError:
        raise FieldError(field, f"must be one of {', '.join(STRATEGIES)}, a JSON object or a "
                         f".json file, got {value!r}") from None
    if not isinstance(mapping, dict):
        raise FieldError(field, f"must be a JSON object of module names to devices, got "
                         f"{value!r}")
    return _check_values(mapping, field)


def _check_values(mapping: dict[str, Any], field: str) -> dict[str, Any]:
    """Each device a map names is one this machine has."""
    if not mapping:
        raise FieldError(field, "is an empty map: name a device for every module (\"\" for all)")
    for module, device in mapping.items():
        if not isinstance(module, str):
            raise FieldError(field, f"keys are module names, got {module!r}")
        check_device(device, f"{field}[{module!r}]" if module else field)
    return mapping


def check_device(device: Any, field: str) -> None:
    """``device`` (``cpu``, a GPU index, ``cuda``, ``cuda:N``, ``mps``) exists here."""
    import torch

    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise FieldError(field, f"must be cpu, a GPU index or cuda:N, got {device!r}")
    if device == "disk":
        raise FieldError(field, "offloads to disk, which w2s does not set up; use cpu")
    if isinstance(device, int):  # a GPU index, as accelerate reads it
        if device < 0:
            raise FieldError(field, f"must be cpu, a GPU index or cuda:N, got {device!r}")
        device = f"cuda:{device}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise FieldError(field, f"must be cpu, a GPU index or cuda:N, got {device!r}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index or 0
        if index >= count:
            have = f"this machine has {count}" if count else "this machine has none"
            raise FieldError(field, f"names CUDA device {index}, and {have} that torch can use")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise FieldError(field, "names mps, and this machine has no Apple GPU torch can use")


def _outermost(name: str, device_map: dict[str, Any]) -> str:
    """The outermost module holding parameter ``name`` of which the map places nothing
    (``model.layers.4``, not each of its weights)."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if not any(k == prefix or k.startswith(prefix + ".") for k in device_map):
            return prefix
    return name


def check_coverage(device_map: dict[str, Any], path: str, field: str = "device_map") -> None:
    """Every parameter of the model at ``path`` is placed by ``device_map`` (a key equal to its
    module's name or to a dotted prefix of it, or ``""``); checked on an empty-weights copy
    built from the config, so nothing is read from disk but ``config.json``."""
    if "" in device_map:
        return
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    unplaced = [name for name, _ in model.named_parameters()
                if not any(name == k or name.startswith(k + ".") for k in device_map)]
    if unplaced:
        modules = list(dict.fromkeys(_outermost(n, device_map) for n in unplaced))
        shown = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3
                                          else "")
        raise FieldError(field, f"leaves {shown} unplaced: give every module a device (\"\" "
                         "places the rest)", sep=" ")

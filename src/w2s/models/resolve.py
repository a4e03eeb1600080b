"""Where a model reference points: ``zoo:ROLE``, a local folder or a hub id (no model is loaded
here, so the loaders themselves -- :meth:`w2s.models.hf.HFModel.load` included -- can resolve);
or ``REF@URL[#SERVED_NAME]``, a model served by an engine at ``URL`` whose tokenizer, chat
template and config ``REF`` holds (:class:`~w2s.models.engine_lm.EngineLM`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from w2s.errors import W2SError

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo" / "models"
"""Where the shipped zoo's models live (package data; ``w2s.zoo`` re-exports it)."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def engine_ref(ref: str) -> tuple[str, str, str | None] | None:
    """``REF@URL[#NAME]`` -> ``(REF, URL, NAME or None)``; None for a reference without an
    engine URL."""
    local, sep, rest = ref.partition("@http")
    if not sep:
        return None
    url, _, name = ("http" + rest).partition("#")
    return local, url, name or None


def resolve_model(ref: str | os.PathLike[str], base_dir: Path | None = None) -> str:
    """``zoo:ROLE`` -> the shipped zoo; a folder (relative to ``base_dir``, then to the working
    directory); otherwise a hub id. A path-looking reference that does not exist is an error."""
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str) or not ref.strip():
        raise W2SError(f"a model is named by a non-empty string or a path, got {ref!r}")
    base_dir = base_dir if base_dir is not None else Path.cwd()
    served = engine_ref(ref)
    if served is not None:
        local, url, name = served
        if not re.match(r"^https?://[^/\s#]+", url):
            raise W2SError(f"model {ref!r}: {url!r} is not an engine URL (http://host:port/v1)")
        if not local:
            raise W2SError(f"model {ref!r}: name the model's tokenizer before the URL "
                           "(REF@URL, REF a folder, zoo:ROLE or a hub id)")
        return f"{resolve_model(local, base_dir)}@{url}" + (f"#{name}" if name else "")
    if ref.startswith("zoo:"):
        folder = ZOO_DIR / ref[4:]
        if not (folder / "config.json").is_file():
            roles = sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file())
            raise W2SError(f"no zoo model {ref!r}; the zoo has {', '.join('zoo:' + r for r in roles)}")
        return str(folder)
    local = Path(ref).expanduser()
    for cand in ([local] if local.is_absolute() else [base_dir / local, local]):
        if cand.is_dir():
            return str(cand)
    looks_like_path = ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref
    if looks_like_path or not _HUB_ID.match(ref):
        raise W2SError(f"model {ref!r} does not exist (no such folder; looked relative to "
                       f"{base_dir} and to the working directory)")
    return ref  # a hub id: from_pretrained will fetch it (or say in one line why it cannot)

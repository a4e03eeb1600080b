"""Frozen features: one pass of a model over every text, cached, so probes train in seconds.

A text's feature is the final hidden state (after the model's last norm) at its last token, or
the mean over its tokens. The last token is what ``transformers``' sequence classifiers read
(``*ForSequenceClassification`` scores the last non-padding token), so a probe on these
features *is* such a classifier's head, and exports as one (:mod:`w2s.generalise.reward`).
Texts are encoded exactly as :class:`~w2s.guides.reward_model.RewardModelGuide` encodes them
(``tokenizer(text, add_special_tokens=True)``), right-padded, batched by length.

The cache (``FOLDER/ROLE.safetensors``) records the model, its tokenizer's and weights'
fingerprints, the pooling and the items' digest in its metadata; a cache that no longer
matches its model (the folder was rebuilt with another tokenizer) is refused in one line,
never read as if it did.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2s.errors import W2SError


def weights_fingerprint(path: str) -> str:
    """A digest of a model folder's config and weight files' names and sizes (cheap: the
    weights are not read); a hub id stands for itself."""
    folder = Path(path)
    if not folder.is_dir():
        return hashlib.sha256(path.encode()).hexdigest()[:16]
    h = hashlib.sha256()
    cfg = folder / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for p in sorted(folder.iterdir()):
        if p.suffix in (".safetensors", ".bin", ".pt", ".gguf"):
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


def load_encoder(path: str, device: str, dtype: str) -> tuple[Any, Any]:
    """The model's backbone (``AutoModel``: the part a sequence classifier puts its head on)
    and its tokenizer, with a pad token."""
    from transformers import AutoModel

    from w2s.models.loading import (
        choose_device,
        choose_dtype,
        load_error,
        load_tokenizer,
        quiet_loading,
    )

    dev = choose_device(device)
    tok = load_tokenizer(path)
    try:
        with quiet_loading():
            model = AutoModel.from_pretrained(path, dtype=choose_dtype(dtype, dev))
    except Exception as e:  # noqa: BLE001
        raise load_error(path, e) from None
    return model.to(dev).eval(), tok


def encode(tok: Any, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids as the reward-model guide makes them, cut to ``max_tokens``."""
    return [list(ids[:max_tokens]) for ids in tok(list(texts), add_special_tokens=True)[
        "input_ids"]]


@torch.inference_mode()
def extract(model: Any, tok: Any, texts: Sequence[str], *, pool: str, max_tokens: int,
            batch: int, advance: Callable[[int], None] | None = None) -> np.ndarray:
    """``(len(texts), hidden)`` float32 features."""
    seqs = encode(tok, texts, max_tokens)
    if any(not s for s in seqs):
        n = next(i for i, s in enumerate(seqs) if not s)
        raise W2SError(f"text {n} encodes to no tokens: {texts[n][:40]!r}")
    dev = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: np.ndarray | None = None
    for lo in range(0, len(order), batch):
        idx = order[lo: lo + batch]
        width = max(len(seqs[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, i in enumerate(idx):  # right padding: row j's tokens sit at 0..len-1
            ids[j, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[j, : len(seqs[i])] = 1
        h = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state.float()
        m = mask.to(h.device)
        if pool == "last":
            f = h[torch.arange(len(idx), device=h.device), m.sum(1) - 1]  # (B, H)
        else:
            f = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)  # (B, H)
        if out is None:
            out = np.empty((len(seqs), f.shape[-1]), dtype=np.float32)
        out[idx] = f.cpu().numpy()
        if advance is not None:
            advance(len(idx))
    assert out is not None
    if not np.isfinite(out).all():
        raise W2SError("the model produced non-finite hidden states (NaN or inf): its weights "
                       "are broken or its dtype overflows (try dtype: float32)")
    return out


def matches(file: Path, role: str, ref: str, digest: str, pool: str, max_tokens: int) -> bool:
    """Whether ``file`` holds ``role``'s features of these items under these settings (the
    model's fingerprints are checked again when it is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), "np") as f:
            meta = dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - not a features file: no match
        return False
    return (meta.get("role"), meta.get("model"), meta.get("items"), meta.get("pool"),
            meta.get("max_tokens")) == (role, ref, digest, pool, str(max_tokens))


def cached_features(role: str, ref: str, path: str, texts: Sequence[str], digest: str,
                    folder: Path, *, pool: str, max_tokens: int, batch: int, device: str,
                    dtype: str, progress: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``role``'s features of ``texts`` (``path``: the resolved model), from the cache when it
    matches, else extracted and cached; and the cache's metadata (with time and memory)."""
    from safetensors.numpy import load_file, save_file

    from w2s.generalise.measure import measured
    from w2s.models.loading import load_tokenizer, tokenizer_fingerprint

    file = folder / f"{role}.safetensors"
    want = {"role": role, "model": ref, "pool": pool, "max_tokens": str(max_tokens),
            "items": digest, "weights": weights_fingerprint(path)}
    tok_fp = tokenizer_fingerprint(load_tokenizer(path))
    if file.is_file():
        from safetensors import safe_open

        with safe_open(str(file), "np") as f:
            meta = dict(f.metadata() or {})
        if meta.get("tokenizer") != tok_fp:
            raise W2SError(f"{file} holds features made with another tokenizer (fingerprint "
                           f"{meta.get('tokenizer')}) than {ref!r} has now ({tok_fp}); the "
                           "model changed since: delete the file to extract them again")
        for k, v in want.items():
            if meta.get(k) != v:
                raise W2SError(f"{file} holds features of other settings ({k}: "
                               f"{meta.get(k)!r}, now {v!r}); delete it to extract them again")
        return load_file(str(file))["features"], json.loads(meta["cost"])
    folder.mkdir(parents=True, exist_ok=True)
    with measured() as cost:
        model, tok = load_encoder(path, device, dtype)
        task = progress.add_task(f"features: {role}", total=len(texts)) if progress else None
        feats = extract(model, tok, texts, pool=pool, max_tokens=max_tokens, batch=batch,
                        advance=(lambda n: progress.advance(task, n)) if progress else None)
        if progress:
            progress.remove_task(task)
        del model
    cost["texts"] = len(texts)
    cost["dim"] = int(feats.shape[1])
    tmp = file.with_suffix(".tmp")
    save_file({"features": feats}, str(tmp),
              metadata={**want, "tokenizer": tok_fp, "cost": json.dumps(cost)})
    os.replace(tmp, file)
    return feats, cost

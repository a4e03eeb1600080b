"""A causal LM with a new one-output classification head: what fine-tuning trains and what a
probe is exported as."""

from __future__ import annotations

from typing import Any

import torch

from w2s.errors import W2SError


def new_classifier(path: str) -> tuple[Any, Any]:
    """``AutoModelForSequenceClassification`` on ``path`` with one output (its head new), in
    float32, and its tokenizer, both with a pad token; a model that transformers gives no
    such head is one line."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as HEADS,
    )

    from w2s.models.loading import load_error, load_tokenizer, quiet_loading

    tok = load_tokenizer(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    try:
        cfg = AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        raise load_error(path, e) from None
    if cfg.model_type not in HEADS:
        raise W2SError(f"model {path!r} ({cfg.model_type}) has no sequence-classification head "
                       "in transformers, so it cannot be fine-tuned as a classifier; use "
                       "train: probe (features work for any model)")
    try:
        with quiet_loading():
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        raise load_error(path, e) from None
    model.config.pad_token_id = tok.pad_token_id
    return model, tok

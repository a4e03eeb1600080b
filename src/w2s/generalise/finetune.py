"""Fine-tuning path: every model trained whole (or through LoRA adapters) as a sequence
classifier, with the same losses as the probes.

A causal LM gets ``transformers``' sequence-classification head (``AutoModelForSequenceClassification``
with one output: the item's logit, read at the last token, as the probes' features are); LoRA
goes through peft (``task_type="SEQ_CLS"``, so the new head is trained in full). The loop is
plain PyTorch: AdamW, linear decay, a seeded order, and the training fraction passed to the
loss (the auxiliary confidence loss warms up on it). On a GPU it runs in bfloat16 autocast.

Cost on 2 CPU cores: SmolLM2-135M trains at a few hundred tokens a second, so the probes are
the path for a whole table here; the same config with ``train: finetune`` on a GPU runs each
model in seconds to minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from w2s.generalise.config import FinetuneConfig


def load_classifier(path: str, device: str, lora: bool, lora_r: int) -> tuple[Any, Any]:
    """A one-output sequence classifier on ``path`` (its head new, LoRA adapters when asked)
    on ``device``, and its tokenizer."""
    from w2s.generalise.classifier import new_classifier
    from w2s.models.loading import choose_device

    model, tok = new_classifier(path)
    if lora:
        from peft import LoraConfig, get_peft_model

        from w2s.quiet import quiet_checkpointing_rename

        with quiet_checkpointing_rename():
            model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                                     target_modules="all-linear",
                                                     task_type="SEQ_CLS"))
    return model.to(choose_device(device)), tok


def _batch(tok: Any, texts: Sequence[str], max_tokens: int, dev: torch.device
           ) -> dict[str, torch.Tensor]:
    enc = tok(list(texts), add_special_tokens=True, truncation=True, max_length=max_tokens,
              padding=True, return_tensors="pt", padding_side="right")
    return {k: v.to(dev) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def finetune(path: str, texts: Sequence[str], targets: np.ndarray,
             loss: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor],
             cfg: FinetuneConfig, *, lr: float, seed: int, device: str,
             predict: dict[str, Sequence[str]],
             advance: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Train a classifier on ``path`` for soft ``targets`` of ``texts``; return its
    probabilities of class 1 on each named list of ``predict`` (the model is not kept)."""
    torch.manual_seed(seed)
    model, tok = load_classifier(path, device, cfg.lora, cfg.lora_r)
    dev = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(texts) / cfg.batch_size)
    total = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    gen = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(targets, dtype=torch.float32)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else \
        torch.autocast("cpu", enabled=False)
    model.train()
    step = 0
    while step < total:
        order = torch.randperm(len(texts), generator=gen).tolist()
        for lo in range(0, len(order), cfg.batch_size):
            if step >= total:
                break
            idx = order[lo: lo + cfg.batch_size]
            with autocast:
                z = model(**_batch(tok, [texts[i] for i in idx], cfg.max_tokens, dev)).logits
            obj = loss(z.float().view(-1), y[idx].to(dev), step / total)
            opt.zero_grad()
            obj.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            if advance is not None:
                advance(1)
    model.eval()
    return {name: _predict(model, tok, list(xs), cfg, dev) for name, xs in predict.items()}


@torch.inference_mode()
def _predict(model: Any, tok: Any, texts: list[str], cfg: FinetuneConfig, dev: torch.device
             ) -> np.ndarray:
    out = np.empty(len(texts))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for lo in range(0, len(order), 64):
        idx = order[lo: lo + 64]
        z = model(**_batch(tok, [texts[i] for i in idx], cfg.max_tokens, dev)).logits
        out[idx] = torch.sigmoid(z.float().view(-1)).cpu().numpy()
    return out


def steps(n_texts: int, cfg: FinetuneConfig) -> int:
    """Optimizer steps of one fine-tuning run (the progress bar's length)."""
    return max(1, math.ceil(cfg.epochs * math.ceil(n_texts / cfg.batch_size)))

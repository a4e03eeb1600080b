"""A ``transformers`` sequence-classification model as the guide (or a gold scorer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from w2s.chat import messages_of
from w2s.errors import FieldError, W2SError
from w2s.guides.base import Guide
from w2s.models.loading import (
    choose_device,
    choose_dtype,
    load_error,
    load_tokenizer,
    quiet_loading,
)
from w2s.models.resolve import resolve_model

REWARD_CARD = "w2s_reward.json"
"""What a reward model w2s trained was trained for (``w2s generalise`` writes it beside the
weights): ``reward_for`` names the eval task it scores, so using it on another is refused."""


def reward_card(path: str) -> dict | None:
    """The card of a reward model folder w2s trained, or None (any other model)."""
    import json
    from pathlib import Path

    card = Path(path) / REWARD_CARD
    if not card.is_file():
        return None
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise W2SError(f"{card} is not valid JSON; remove it or export the reward model "
                       "again") from None
    return data if isinstance(data, dict) else None


def check_reward_task(path: str, task: str, where: str = "guide.reward_model") -> None:
    """Refuse a reward model trained for another task than ``task`` (when its card says)."""
    card = reward_card(path)
    made_for = None if card is None else card.get("reward_for")
    if made_for is not None and made_for != task:
        raise W2SError(f"{where}: {path!r} is a reward model for the task {made_for!r} (its "
                       f"{REWARD_CARD}), not for {task!r}; train one for {task!r} with w2s "
                       "generalise (reward_for), or use another guide")


def check_classifier(path: str) -> None:
    """Refuse a model that is not a sequence classifier: transformers would silently give a
    causal LM a freshly initialised (random) scoring head, and every score would be noise."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        raise load_error(path, e) from None
    arch = list(getattr(cfg, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in arch):
        raise W2SError(f"{path!r} is not a sequence-classification reward model (its "
                       f"architecture is {', '.join(arch) or 'not stated'}); a language model "
                       "can guide as an arm, or as a tuned/untuned pair")


class RewardModelGuide(Guide):
    """A ``transformers`` sequence-classification model as the guide.

    With one output the score is that logit; with several it is the log-probability of
    ``label`` (default: the last label, e.g. "positive" in a negative/positive classifier).
    ``chat=True`` formats (prompt, response) as a user and an assistant turn.
    """

    def __init__(self, model: Any, tokenizer: Any, *, chat: bool = False, label: int | None = None,
                 name: str = "", batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chat = chat
        self.name = name or type(model).__name__
        self.batch_size = batch_size
        n = model.config.num_labels
        self.label = (n - 1) if label is None else label
        if not 0 <= self.label < n:
            raise W2SError(f"label must be in [0, {n}) for {self.name!r}, got {label}")
        if chat and not getattr(tokenizer, "chat_template", None):
            raise FieldError("chat", f"needs a chat template, and reward model {self.name!r} "
                             "has none; leave chat off")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = pad
        if model.config.pad_token_id is None:
            model.config.pad_token_id = pad

    @classmethod
    def load(cls, path: str, *, dtype: str = "auto", device: str = "auto", chat: bool = False,
             label: int | None = None) -> RewardModelGuide:
        from transformers import AutoModelForSequenceClassification

        dev = choose_device(device)
        path = resolve_model(path)
        check_classifier(path)
        tok = load_tokenizer(path)
        try:
            with quiet_loading():
                model = AutoModelForSequenceClassification.from_pretrained(
                    path, dtype=choose_dtype(dtype, dev))
        except Exception as e:  # noqa: BLE001
            raise load_error(path, e) from None
        return cls(model.to(dev), tok, chat=chat, label=label, name=path)

    def _encode(self, prompt: str, response: str) -> list[int]:
        tok = self.tokenizer
        msgs = messages_of(prompt, self.chat)
        if msgs is not None:
            if not getattr(tok, "chat_template", None):
                raise W2SError(f"reward model {self.name!r} has no chat template, so it cannot "
                               "format chat messages")
            text = tok.apply_chat_template(msgs + [{"role": "assistant", "content": response}],
                                           tokenize=False)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(prompt + response, add_special_tokens=True)["input_ids"])

    @torch.inference_mode()
    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        seqs = [self._encode(p, r) for p, r in zip(prompts, responses)]
        dev = next(self.model.parameters()).device
        scores: list[torch.Tensor] = []
        for lo in range(0, len(seqs), self.batch_size):
            chunk = seqs[lo: lo + self.batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, s in enumerate(chunk):  # right padding: the head reads the last real token
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
            if logits.shape[-1] == 1:
                scores.append(logits[:, 0].cpu())
            else:
                scores.append(logits.log_softmax(-1)[:, self.label].cpu())
        return torch.cat(scores), sum(len(s) for s in seqs)

"""Chat prompts: a conversation that travels where a prompt string does.

A :class:`ChatPrompt` *is* its canonical JSON string, so everything that keys, batches or logs
prompts by their text (random streams, result rows, prompt de-duplication) works unchanged,
while every model that formats prompts (the base, a guide's models, a reward model) sees the
messages and applies its *own* chat template to them. A plain ``str`` stays plain text unless the
model was loaded with ``chat=True``, which makes it one user turn (the CLI's ``--chat``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from w2s.errors import W2SError

ROLES = ("system", "user", "assistant")


class ChatPrompt(str):
    """A conversation (``[{"role", "content"}, ...]``) as a prompt; its text is canonical JSON."""

    messages: tuple[dict[str, str], ...]

    def __new__(cls, messages: Sequence[dict[str, Any]]) -> ChatPrompt:
        msgs = tuple(_message(i, m) for i, m in enumerate(messages))
        if not msgs:
            raise W2SError("messages must hold at least one message")
        self = super().__new__(cls, json.dumps([dict(m) for m in msgs], ensure_ascii=False,
                                               separators=(",", ":")))
        self.messages = msgs
        return self


def _message(i: int, m: Any) -> dict[str, str]:
    if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"),
                                                                              str):
        raise W2SError(f"messages[{i}] must be {{'role': one of {', '.join(ROLES)}, "
                       "'content': a string}")
    return {"role": m["role"], "content": m["content"]}


def messages_of(prompt: str, chat: bool) -> list[dict[str, str]] | None:
    """The conversation a model formats with its chat template, or None for plain text."""
    if isinstance(prompt, ChatPrompt):
        return [dict(m) for m in prompt.messages]
    if chat:
        return [{"role": "user", "content": prompt}]
    return None


def render(tokenizer: Any, prompt: str, chat: bool, name: str) -> str | None:
    """The prompt through ``tokenizer``'s chat template (generation prompt added), or None when
    the prompt is plain text; a model without a template is refused in one line."""
    msgs = messages_of(prompt, chat)
    if msgs is None:
        return None
    if not getattr(tokenizer, "chat_template", None):
        raise W2SError(f"model {name!r} has no chat template, so it cannot format chat messages")
    return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)


def prompt_ids(tokenizer: Any, prompt: str, chat: bool, name: str) -> list[int]:
    """A prompt's token ids as a model formats it: its chat template for a :class:`ChatPrompt`
    (or one user turn when ``chat``), else plain text with the tokenizer's special tokens
    (BOS); an empty prompt is the BOS token alone. In-process and engine-served models share
    it, so both read a prompt as the same tokens."""
    text = render(tokenizer, prompt, chat, name)
    if text is not None:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if not ids:
        if tokenizer.bos_token_id is None:
            raise W2SError(f"the prompt {prompt!r} is empty for {name!r} (no tokens and "
                           "no BOS token to condition on)")
        ids = [tokenizer.bos_token_id]
    return list(ids)


def response_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Responses' token ids (no special tokens), in one batched tokenizer call."""
    if not texts:
        return []
    return [list(x) for x in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

"""A guide's language model served by an engine: scoring over HTTP (a :class:`ScoringLM`).

In the paper's setups the guides are 1-8 B models, big enough to want an engine of their own.
:class:`EngineLM` scores response tokens with the engine's echoed prompt log-probabilities
(``/v1/completions`` with ``echo``, ``logprobs: 0``, ``max_tokens: 0``): each scored sequence is
sent as token ids (the prompt formatted and tokenized here, by the model's own tokenizer and
chat template, then the response's ids), many sequences per request (vLLM takes a list of
token-id prompts), so a round of a search costs one batched request per model (split by
``batch_size``), never a re-tokenization by the engine.

A model is named ``REF@URL`` (``REF@URL#SERVED_NAME`` when the engine serves several): ``REF``
(``zoo:ROLE``, a folder, a hub id) holds its tokenizer, chat template and config (for its size),
``URL`` is the engine's API root. Before the first score the engine's ``/tokenize`` is asked for
a probe text: a server whose token ids for it differ from ``REF``'s (not only their count: two
tokenizers can cut a text into as many tokens and number them differently) is refused in one
line (its scores would be of other tokens).

Scores are the engine's: equal to the same model in process within float tolerance (the vLLM
tests check it). No KV cache is kept between rounds here; an engine with prefix caching keeps
it (vLLM: prompt log-probability requests may skip that cache, vllm#13409 -- measured in
``bench/engine_guides.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch

from w2s.chat import prompt_ids, response_ids
from w2s.errors import FieldError, W2SError
from w2s.models.base import TokenLoglik
from w2s.models.loading import load_tokenizer
from w2s.models.resolve import resolve_model

PROBE = "Weak-to-strong search: 42 tokens, naïve café, 日本語, emoji 🙂 and  two spaces."
"""The text whose tokens the engine and the local tokenizer must agree on."""


class EngineLM(TokenLoglik):
    """A causal LM behind an OpenAI-compatible engine that echoes prompt log-probabilities."""

    def __init__(self, url: str, tokenizer: str, *, model: str | None = None,
                 chat: bool = False, api_key: str | None = None, max_concurrency: int = 16,
                 timeout: float = 120.0, max_retries: int = 6, batch_size: int = 64,
                 config: str | None = None) -> None:
        from w2s.models.openai_api import OpenAIBackend

        tokenizer = resolve_model(tokenizer)
        self.tokenizer = load_tokenizer(tokenizer)
        self.ref, self.chat, self.batch_size = tokenizer, chat, batch_size
        self._config = config or tokenizer
        if chat and not getattr(self.tokenizer, "chat_template", None):
            raise FieldError("chat", f"needs a chat template, and guide model {tokenizer!r} "
                             "has none; leave chat off")
        self.client = OpenAIBackend(url, model or "?", api_key=api_key,
                                    max_concurrency=max_concurrency, timeout=timeout,
                                    max_retries=max_retries, token_prompts=False)
        self.model = model or self._served_model()
        self.client.model = self.model
        self.client.check_prompts([], 0)  # reachable, and serving that model (one line if not)
        self.name = f"{self.model}@{self.client.base_url}"
        self._checked = False

    def _served_model(self) -> str:
        """The engine's one served model (a URL that serves several must name one)."""
        served = self.client.served_models() or []
        if len(served) != 1:
            url = self.client.base_url
            raise W2SError(f"{url} serves {', '.join(served) or 'no model it lists'}; "
                           f"name one: {self.ref}@{url}#SERVED_NAME")
        return served[0]

    # --------------------------------------------------------------- ScoringLM
    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    def encode_prompt(self, prompt: str) -> list[int]:
        return prompt_ids(self.tokenizer, prompt, self.chat, self.name)

    def encode_responses(self, texts: Sequence[str]) -> list[list[int]]:
        return response_ids(self.tokenizer, texts)

    @cached_property
    def n_params(self) -> int:
        """Parameters of the model ``REF``'s config describes (built on the meta device: no
        weights are read); 0 when ``REF`` has no config."""
        try:
            from transformers import AutoConfig, AutoModelForCausalLM

            cfg = AutoConfig.from_pretrained(self._config)
            with torch.device("meta"):
                m = AutoModelForCausalLM.from_config(cfg)
            return sum(p.numel() for p in m.parameters())
        except Exception:  # noqa: BLE001 - a size is an estimate; without a config, none
            return 0

    def check_tokenizer(self) -> None:
        """Refuse, in one line, an engine whose tokenizer differs from ``REF``'s."""
        if self._checked:
            return
        self._checked = True
        answer = self.client.engine_tokenize([PROBE])
        if answer is None:
            return  # an engine without /tokenize: nothing to compare with
        mine = list(self.tokenizer(PROBE, add_special_tokens=True)["input_ids"])
        there = list(answer[0])
        if there != mine:  # the ids themselves: as many tokens can still be other tokens
            if len(there) != len(mine):
                how = f"{len(there)} tokens there, {len(mine)} here"
            else:
                k = next(i for i, (a, b) in enumerate(zip(there, mine)) if a != b)
                how = (f"{len(mine)} tokens both there and here, but token {k} is id "
                       f"{there[k]} there and {mine[k]} here")
            raise W2SError(f"{self.client.base_url} serves {self.model!r} with another "
                           f"tokenizer than {self.ref!r} names (the probe text tokenizes to "
                           f"{how}): serve the guide's own model, or name its tokenizer")

    def token_logprobs(self, prefixes: Sequence[Sequence[int]],
                       targets: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """``log p(target_t | prefix, target_<t)`` of every target token, from the engine's
        echoed prompt log-probabilities; one request per ``batch_size`` sequences."""
        self.check_tokenizer()
        rows = [i for i, t in enumerate(targets) if t]
        bodies = []
        for lo in range(0, len(rows), self.batch_size):
            part = rows[lo: lo + self.batch_size]
            bodies.append({"model": self.model, "max_tokens": 0, "echo": True, "logprobs": 0,
                           "temperature": 0.0,
                           "prompt": [list(prefixes[i]) + list(targets[i]) for i in part]})
        out = [torch.zeros(0, dtype=torch.float64) for _ in targets]
        answers = self.client.post_all_to("/completions", bodies)
        for lo, data in zip(range(0, len(rows), self.batch_size), answers):
            part = rows[lo: lo + self.batch_size]
            for i, choice in zip(part, self._choices(data, len(part))):
                out[i] = self._target_logprobs(choice, len(targets[i]))
        return out

    def _choices(self, data: Any, n: int) -> list[dict[str, Any]]:
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        except (KeyError, TypeError, AttributeError):
            raise W2SError(f"{self.client.base_url}/completions answered without choices"
                           ) from None
        if len(choices) != n:
            raise W2SError(f"{self.client.base_url}/completions returned {len(choices)} "
                           f"choices for {n} prompts")
        return choices

    def _target_logprobs(self, choice: dict[str, Any], n: int) -> torch.Tensor:
        lps = (choice.get("logprobs") or {}).get("token_logprobs") or []
        tail = lps[len(lps) - n:] if len(lps) > n else None
        if tail is None or any(not isinstance(x, (int, float)) for x in tail):
            raise W2SError(f"{self.client.base_url} gave no prompt log-probabilities for "
                           f"{self.model!r} (a guide behind an engine needs echo with "
                           "logprobs)")
        return torch.tensor(tail, dtype=torch.float64)

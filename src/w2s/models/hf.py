"""White-box backend over Hugging Face ``transformers``.

One :class:`HFModel` wraps a causal LM, its tokenizer and its prompt format; it serves as the
base model (sampling with a KV cache), as a member of a tuned/untuned guide pair (scoring
response tokens), and as a source of next-token logits for token-level methods (EFT). Split
along ``transformers``' lines: loading, tokenization and the forward pass here; the search
cache in :mod:`w2s.models.hf_search`; teacher-forced scoring in :mod:`w2s.models.hf_scoring`.

Batches are left-padded with explicit ``position_ids`` so that every row sees the positions it
would see alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import torch

from w2s.chat import prompt_ids, response_ids
from w2s.errors import FieldError, W2SError
from w2s.models.base import TokenLoglik
from w2s.models.hf_scoring import Scoring
from w2s.models.hf_search import KVSearch
from w2s.models.loading import (
    choose_device,
    choose_dtype,
    load_error,
    load_tokenizer,
    quiet_loading,
)
from w2s.params import SamplingParams
from w2s.stopping import Stopper

TOKENIZER_KEYWORDS = ("revision", "trust_remote_code", "token", "cache_dir", "local_files_only",
                      "subfolder")
"""``from_pretrained`` keywords that the tokenizer needs as much as the weights."""


def placed(device_map: Any, path: str) -> Any:
    """``device_map`` checked for the model at ``path``: its devices exist, its layers are all
    placed."""
    import importlib.util

    from w2s.models.placement import check_coverage, parse_device_map

    device_map = parse_device_map(device_map)
    if importlib.util.find_spec("accelerate") is None:
        raise FieldError("device_map", "needs accelerate, which is not installed: pip install "
                         "'w2s[gpu]'")
    if isinstance(device_map, dict):
        check_coverage(device_map, path)
    return device_map


class HFModel(KVSearch, Scoring, TokenLoglik):
    """A ``transformers`` causal LM with its tokenizer and prompt format.

    Build one with :meth:`load` (a local folder or a hub id), or from objects you already hold.
    ``chat=True`` formats each prompt as one user turn through the tokenizer's chat template.
    """

    def __init__(self, model: Any, tokenizer: Any, *, chat: bool = False, name: str = "",
                 batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chat = chat
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size
        if chat and not getattr(tokenizer, "chat_template", None):
            raise FieldError("chat", f"needs a chat template, and model {self.name!r} has "
                             "none; leave chat off or use a tokenizer that has one")
        eos: set[int] = set()
        for src in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)
                    if getattr(model, "generation_config", None) is not None else None):
            if isinstance(src, int):
                eos.add(src)
            elif isinstance(src, (list, tuple)):
                eos.update(int(x) for x in src)
        self.eos_ids = frozenset(eos)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # tokens the tokenizer can produce (sampling never picks ids beyond it); computed once,
        # as start() and step() slice logits with it on every decode step
        self.vocab_size = min(len(tokenizer), model.get_output_embeddings().weight.shape[0])
        self.device_map: Any = None
        """The accelerate placement it was loaded with (:meth:`load`'s ``device_map``), or
        None: all on :attr:`device`."""

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike[str], *, dtype: str = "auto", device: str = "auto",
             chat: bool = False, batch_size: int = 64, **from_pretrained: Any) -> HFModel:
        """Load a causal LM and its tokenizer from a local folder, ``zoo:ROLE`` or a hub id.

        Other keywords go to ``from_pretrained`` as they are (``revision``,
        ``trust_remote_code``, ``attn_implementation`` ...); those that say where and how to
        fetch (``TOKENIZER_KEYWORDS``) reach the tokenizer too. ``device_map`` (accelerate's:
        ``auto``, ``balanced``, a JSON object or file, a mapping; see
        :mod:`w2s.models.placement`) shards the model over GPUs and is checked before any
        weight loads; the model then stays where accelerate put it (``device`` only chooses
        the dtype)."""
        from transformers import AutoModelForCausalLM

        from w2s.models.resolve import resolve_model

        if "dtype" in from_pretrained or "torch_dtype" in from_pretrained:
            raise W2SError("give the dtype as dtype='bfloat16' (auto, float32, bfloat16, "
                           "float16), not through from_pretrained's keywords")
        path = resolve_model(path)
        dev = choose_device(device)
        dt = choose_dtype(dtype, dev)
        if "revision" in from_pretrained and os.path.isdir(path):
            raise W2SError(f"revision names a hub commit, but {path!r} is a local folder")
        shared = {k: from_pretrained[k] for k in TOKENIZER_KEYWORDS if k in from_pretrained}
        tokenizer = load_tokenizer(path, **shared)
        if from_pretrained.get("device_map") is not None:
            from_pretrained["device_map"] = placed(from_pretrained["device_map"], path)
        try:
            with quiet_loading():
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, **from_pretrained)
        except TypeError as e:  # an unknown keyword: the user's, named
            raise W2SError(f"from_pretrained refused a keyword for {path!r}: {e}") from None
        except Exception as e:  # noqa: BLE001
            raise load_error(path, e) from None
        if from_pretrained.get("device_map") is None:
            model = model.to(dev)
        lm = cls(model, tokenizer, chat=chat, name=path, batch_size=batch_size)
        lm.device_map = from_pretrained.get("device_map")
        return lm

    # ------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def vocabulary(self) -> Mapping[str, int]:
        """Token -> id (computed once: token-level methods compare vocabularies per call)."""
        return self.tokenizer.get_vocab()

    @property
    def max_context(self) -> int | None:
        cfg = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            v = getattr(cfg, name, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    # ------------------------------------------------------------ tokenization
    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids: the chat template for a :class:`~w2s.chat.ChatPrompt` (or one user
        turn when ``chat``), else plain text."""
        return prompt_ids(self.tokenizer, prompt, self.chat, self.name)

    def encode_response(self, text: str) -> list[int]:
        """Response token ids, with no special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_responses(self, texts: Sequence[str]) -> list[list[int]]:
        """Many responses at once (one batched tokenizer call)."""
        return response_ids(self.tokenizer, texts)

    @cached_property
    def n_params(self) -> int:
        """:class:`~w2s.models.base.ParamCount`: the model's parameters."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.encode_prompt(prompt))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def stopper(self, sampling: SamplingParams) -> Stopper:
        return Stopper(self.decode, () if sampling.ignore_eos else self.eos_ids, sampling.stop)

    def response_text(self, ids: list[int], stop: tuple[str, ...]) -> str:
        return Stopper(self.decode, self.eos_ids, stop).text(ids)

    def check_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> None:
        """Each prompt encodes (not empty) and fits the context with ``max_new_tokens`` more."""
        for p in prompts:
            self.check_fits(self.encode_prompt(p), max_new_tokens)

    def check_fits(self, prompt_ids: list[int], max_new_tokens: int) -> None:
        ctx = self.max_context
        if ctx is not None and len(prompt_ids) + max_new_tokens > ctx:
            raise W2SError(f"prompt of {len(prompt_ids)} tokens + max_new_tokens {max_new_tokens} "
                           f"exceeds the context of {self.name!r} ({ctx} tokens)")

    # ---------------------------------------------------------- forward passes
    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _forward(self, keep: int, **kw: Any) -> Any:
        """Forward pass computing logits for the last ``keep`` positions only (a (B, T, V)
        logits tensor is the largest allocation of a prefill with a big vocabulary)."""
        try:
            return self.model(logits_to_keep=keep, **kw)
        except TypeError:  # a model class without logits_to_keep
            return self.model(**kw)

    def finite(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits``, after refusing NaN or inf in them: broken weights must not quietly
        produce text (a cheap reduction next to the forward pass that made them)."""
        if not bool(torch.isfinite(logits).all()):
            raise FieldError("dtype", f"gave non-finite logits (NaN or inf) in model "
                             f"{self.name!r}: its weights are broken or the dtype overflows "
                             "(try float32)")
        return logits

"""White-box backend over Hugging Face ``transformers``.

One :class:`HFModel` wraps a causal LM, its tokenizer and its prompt format; it serves as the
base model (sampling with a KV cache), as a member of a tuned/untuned guide pair (scoring
response tokens), and as a source of next-token logits for token-level methods (EFT).

Batches are left-padded with explicit ``position_ids`` so that every row sees the positions it
would see alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from w2s.chat import prompt_ids, response_ids
from w2s.errors import W2SError
from w2s.models.base import Continuation, Request, TokenLoglik
from w2s.models.kv_cache import growing_cache, set_spare
from w2s.models.loading import (
    choose_device,
    load_error,
    load_tokenizer,
    quiet_loading,
    resolve_dtype,
)
from w2s.params import SamplingParams
from w2s.stopping import Stopper
from w2s.token_loop import decode_tokens


@dataclass
class DecodeState:
    """A batch mid-decoding: the KV cache, the attention mask and the next-token logits."""

    cache: Any
    mask: torch.Tensor  # (B, T) 1 for real tokens
    logits: torch.Tensor  # (B, V) float32, next-token logits


@dataclass
class SearchState:
    """The live candidates of a search, one row each, inside the base model.

    ``pending`` holds each row's last sampled token when it is not yet in the KV cache: a chunk
    ends without feeding it, so that only the rows that survive selection pay for it.
    """

    state: DecodeState
    pending: torch.Tensor | None = None  # (B,)

    @property
    def rows(self) -> int:
        return self.state.mask.shape[0]


TOKENIZER_KEYWORDS = ("revision", "trust_remote_code", "token", "cache_dir", "local_files_only",
                      "subfolder")
"""``from_pretrained`` keywords that the tokenizer needs as much as the weights."""


class HFModel(TokenLoglik):
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
            raise W2SError(f"model {self.name!r} has no chat template; drop --chat or use a "
                           "tokenizer that has one")
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

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike[str], *, dtype: str = "auto", device: str = "auto",
             chat: bool = False, batch_size: int = 64, **from_pretrained: Any) -> HFModel:
        """Load a causal LM and its tokenizer from a local folder, ``zoo:ROLE`` or a hub id.

        Other keywords go to ``from_pretrained`` as they are (``revision``,
        ``trust_remote_code``, ``attn_implementation``, ``device_map`` ...); those that say
        where and how to fetch (``TOKENIZER_KEYWORDS``) reach the tokenizer too. With
        ``device_map`` the model stays where accelerate put it (``device`` then only chooses
        the dtype)."""
        from transformers import AutoModelForCausalLM

        from w2s.models.resolve import resolve_model

        if "dtype" in from_pretrained or "torch_dtype" in from_pretrained:
            raise W2SError("give the dtype as dtype='bfloat16' (auto, float32, bfloat16, "
                           "float16), not through from_pretrained's keywords")
        path = resolve_model(path)
        dev = choose_device(device)
        dt = resolve_dtype(dtype, dev)
        if "revision" in from_pretrained and os.path.isdir(path):
            raise W2SError(f"revision names a hub commit, but {path!r} is a local folder")
        shared = {k: from_pretrained[k] for k in TOKENIZER_KEYWORDS if k in from_pretrained}
        tokenizer = load_tokenizer(path, **shared)
        try:
            with quiet_loading():
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, **from_pretrained)
        except TypeError as e:  # an unknown keyword: the user's, named
            raise W2SError(f"from_pretrained refused a keyword for {path!r}: {e}") from None
        except Exception as e:  # noqa: BLE001
            raise load_error(path, e) from None
        if "device_map" not in from_pretrained:
            model = model.to(dev)
        return cls(model, tokenizer, chat=chat, name=path, batch_size=batch_size)

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

    @cached_property
    def _cache_arg(self) -> str:
        """The forward argument (and output field) that carries the KV cache: ``cache`` since
        transformers 5 (where ``past_key_values`` is deprecated), ``past_key_values`` before."""
        import inspect

        params = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    def _with_cache(self, cache: Any, keep: int | None = None, **kw: Any) -> tuple[Any, Any]:
        """A forward pass continuing ``cache``: its output and the grown cache."""
        kw = {**kw, self._cache_arg: cache, "use_cache": True}
        out = self.model(**kw) if keep is None else self._forward(keep, **kw)
        return out, out[self._cache_arg]

    def _forward(self, keep: int, **kw: Any) -> Any:
        """Forward pass computing logits for the last ``keep`` positions only (a (B, T, V)
        logits tensor is the largest allocation of a prefill with a big vocabulary)."""
        try:
            return self.model(logits_to_keep=keep, **kw)
        except TypeError:  # a model class without logits_to_keep
            return self.model(**kw)

    def kv_bytes_per_token(self) -> int:
        """Bytes of KV cache one token of one row takes, from the model's config."""
        cfg = self.model.config
        layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 1)
        heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 1)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 1)
        head_dim = getattr(cfg, "head_dim", None) or hidden // heads
        elem = next(self.model.parameters()).element_size()
        return int(layers * 2 * kv_heads * head_dim * elem)

    def check_memory(self, rows: int, length: int) -> None:
        """Refuse, with a clear error, a batch whose KV cache cannot fit in free memory."""
        need = rows * length * self.kv_bytes_per_token() + rows * self.vocab_size * 4 * 4
        dev = self.device
        if dev.type == "cuda":
            free = torch.cuda.mem_get_info(dev)[0]
        else:
            try:
                free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                return
        if need > 0.9 * free:
            raise W2SError(f"{rows} candidate rows x {length} tokens need about "
                           f"{need / 2**30:.1f} GiB of KV cache on {dev}, but only "
                           f"{free / 2**30:.1f} GiB is free; lower --batch-size, W*K or "
                           "max_new_tokens")

    def finite(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits``, after refusing NaN or inf in them: broken weights must not quietly
        produce text (a cheap reduction next to the forward pass that made them)."""
        if not bool(torch.isfinite(logits).all()):
            raise W2SError(f"model {self.name!r} produced non-finite logits (NaN or inf): its "
                           "weights are broken or its dtype overflows (try --dtype float32)")
        return logits

    @torch.inference_mode()
    def start(self, seqs: Sequence[Sequence[int]]) -> DecodeState:
        """Encode a batch of token sequences (left-padded); return cache and next-token logits."""
        ids, mask = self._left_pad(seqs)  # (B, T)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        out, cache = self._with_cache(growing_cache(), 1, input_ids=ids, attention_mask=mask,
                                      position_ids=pos)
        return DecodeState(cache, mask,
                           self.finite(out.logits[:, -1, : self.vocab_size].float()))

    @torch.inference_mode()
    def step(self, state: DecodeState, tokens: torch.Tensor) -> DecodeState:
        """Feed one token per row ``(B,)``; return the advanced state."""
        mask = torch.cat([state.mask, state.mask.new_ones((state.mask.shape[0], 1))], dim=1)
        pos = mask.sum(-1, keepdim=True) - 1  # (B, 1)
        out, cache = self._with_cache(state.cache, input_ids=tokens.view(-1, 1).to(self.device),
                                      attention_mask=mask, position_ids=pos)
        return DecodeState(cache, mask,
                           self.finite(out.logits[:, -1, : self.vocab_size].float()))

    @torch.inference_mode()
    def forward_cached(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       position_ids: torch.Tensor, cache: Any, keep: int | None = None
                       ) -> tuple[torch.Tensor, Any]:
        """Logits ``(B, T, V)`` of ``input_ids`` appended to ``cache`` (the caller owns the
        mask and positions: incremental scoring crops rows by masking), and the grown cache;
        with ``keep``, the logits of the last ``keep`` positions only ``(B, keep, V)``."""
        out, grown = self._with_cache(cache, keep, input_ids=input_ids,
                                      attention_mask=attention_mask, position_ids=position_ids)
        return out.logits, grown

    @torch.inference_mode()
    def token_logprobs(self, prefixes: Sequence[Sequence[int]],
                       targets: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """log p(target_t | prefix, target_<t) for every target token; one tensor per row."""
        out: list[torch.Tensor] = []
        for logits, nxt, tgt in self._teacher_forced(prefixes, targets):
            lp = logits.gather(-1, nxt.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)  # (B, T-1)
            for i, t in enumerate(tgt):
                out.append(lp[i, lp.shape[1] - len(t):].cpu() if t else lp.new_zeros(0).cpu())
        return out

    @torch.inference_mode()
    def target_logits(self, prefixes: Sequence[Sequence[int]],
                      targets: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """The full next-token logits ``(len(target), V)`` at every target position (teacher
        forcing): what exact per-token KL along a path needs."""
        out: list[torch.Tensor] = []
        for logits, _, tgt in self._teacher_forced(prefixes, targets):
            for i, t in enumerate(tgt):
                out.append(logits[i, logits.shape[1] - len(t):, : self.vocab_size].cpu())
        return out

    def _teacher_forced(self, prefixes: Sequence[Sequence[int]],
                        targets: Sequence[Sequence[int]]):  # noqa: ANN202
        """Per batch: logits ``(B, n, V)`` predicting the last ``n`` tokens, those tokens
        ``(B, n)``, and the batch's targets (rows are left-padded, so targets end aligned)."""
        for lo in range(0, len(prefixes), self.batch_size):
            pre, tgt = prefixes[lo: lo + self.batch_size], targets[lo: lo + self.batch_size]
            seqs = [list(p) + list(t) for p, t in zip(pre, tgt)]
            ids, mask = self._left_pad(seqs)  # (B, T)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            keep = max(len(t) for t in tgt) + 1  # only the positions that predict targets
            logits = self._forward(keep, input_ids=ids, attention_mask=mask,
                                   position_ids=pos).logits
            yield logits[:, -keep:-1].float(), ids[:, ids.shape[1] - keep + 1:], tgt

    # ------------------------------------------------- KV-cached search (stateful)
    def open_search(self, prompts: Sequence[str], max_new_tokens: int,
                    rows_per_prompt: int) -> SearchState:
        """Encode each prompt once; row ``i`` of the state is prompt ``i``'s empty response.
        Refuses first a search whose KV cache cannot fit (``rows_per_prompt`` rows each)."""
        ids = [self.encode_prompt(p) for p in prompts]
        self.check_memory(rows_per_prompt * len(ids), max(map(len, ids)) + max_new_tokens)
        return SearchState(self.start(ids))

    @torch.inference_mode()
    def _catch_up(self, st: SearchState) -> SearchState:
        if st.pending is None:
            return st
        return SearchState(self.step(st.state, st.pending))

    @torch.inference_mode()
    def reindex(self, st: SearchState, idx: Sequence[int], spare: int = 64) -> SearchState:
        """Keep, drop, reorder or copy rows (KV cache included): new row ``j`` = old ``idx[j]``.

        Before copying rows (an expansion), the pending tokens are fed on the smaller batch.
        ``spare``: cache columns to keep free per row for the tokens about to be appended.
        """
        if st.pending is not None and len(idx) > st.rows:
            st = self._catch_up(st)
        index = torch.as_tensor(list(idx), dtype=torch.long, device=self.device)
        set_spare(st.state.cache, spare)
        st.state.cache.reorder_cache(index)
        state = DecodeState(st.state.cache, st.state.mask.index_select(0, index),
                            st.state.logits.index_select(0, index))
        pending = None if st.pending is None else st.pending.index_select(0, index)
        return SearchState(state, pending)

    @torch.inference_mode()
    def sample_chunk(self, st: SearchState, response_ids: Sequence[Sequence[int]],
                     streams: torch.Tensor,
                     max_tokens: int, sampling: SamplingParams, *, top: bool = False,
                     until_below: float | None = None
                     ) -> tuple[list[Continuation], SearchState]:
        """Sample up to ``max_tokens`` tokens for every row of ``st``, continuing its cache.

        ``response_ids[i]`` is row ``i``'s response so far (for stop checks and random positions).
        ``top``: also report each position's top-1 log-probability and the text prefixes;
        ``until_below``: a row stops (unfinished) after a token whose top-1 log-probability is
        below it.
        """
        st = self._catch_up(st)
        stopper = self.stopper(sampling)
        box = [st.state]  # the state the loop advances
        tops: list[list[float]] = [[] for _ in range(st.rows)]

        def step(tok: torch.Tensor) -> None:
            box[0] = self.step(box[0], tok)

        chunk = [0.0] * st.rows  # each row's log-probability of its new tokens

        def record(scores: torch.Tensor, tok: torch.Tensor, taken: list[int],
                   new: list[list[int]]) -> None:
            x = scores.float()  # (B, V); one logsumexp, no (B, V) log-softmax on the hot path
            norm = x.logsumexp(-1)  # (B,)
            took = (x.gather(-1, tok.view(-1, 1).to(x.device)).squeeze(-1) - norm).tolist()
            best = (x.amax(-1) - norm).tolist() if top else None  # (B,) top-1 log-probabilities
            for i in taken:
                chunk[i] += took[i]
                if best is not None:
                    tops[i].append(best[i])

        new, alive, tok = decode_tokens(
            lambda: box[0].logits, step, streams.to(self.device),
            torch.tensor([len(r) for r in response_ids], device=self.device),  # (B,)
            max_tokens, sampling, lambda i, ids: stopper.ended_after(response_ids[i], ids),
            after=record,
            hold=(lambda i: tops[i][-1] < until_below) if top and until_below is not None
            else None)  # an unsure token: not finished, just done for now
        state = box[0]
        conts = [Continuation(self.response_text(list(r) + n, sampling.stop), n, len(n),
                              "length" if a else "stop", logprob=lp)
                 for r, n, a, lp in zip(response_ids, new, alive, chunk)]
        if top:
            for c, r, n, lp in zip(conts, response_ids, new, tops):
                c.top_logprobs = lp
                c.prefixes = [self.response_text(list(r) + n[:i], sampling.stop)
                              for i in range(len(n) + 1)]
        return conts, SearchState(state, tok)

    # --------------------------------------------------------------- sampling
    def complete_top(self, requests: Sequence[Request], max_tokens: int,
                     sampling: SamplingParams, *, until_below: float | None = None
                     ) -> list[list[Continuation]]:
        """:meth:`complete` with each token's top-1 log-probability and text prefixes; a row
        stops right after a token whose top-1 log-probability is below ``until_below``."""
        return self.complete(requests, max_tokens, sampling, top=True, until_below=until_below)

    def complete(self, requests: Sequence[Request], max_tokens: int,
                 sampling: SamplingParams, *, top: bool = False,
                 until_below: float | None = None) -> list[list[Continuation]]:
        """The text-level path every backend has: each request's prompt + response re-encoded
        (its ``response_ids`` when given, so the tokens are the ones sampled), then sampled."""
        prompts: dict[str, list[int]] = {}
        p_ids, r_ids, streams = [], [], []
        for req in requests:
            if req.prompt not in prompts:
                prompts[req.prompt] = self.encode_prompt(req.prompt)
            resp = (list(req.response_ids) if req.response_ids is not None
                    else self.encode_response(req.response))
            for s in req.streams:
                p_ids.append(prompts[req.prompt])
                r_ids.append(resp)
                streams.append(s)
        flat = self.sample(p_ids, r_ids, torch.tensor(streams, dtype=torch.long), max_tokens,
                           sampling, top=top, until_below=until_below)
        out, lo = [], 0
        for req in requests:
            out.append(flat[lo: lo + len(req.streams)])
            lo += len(req.streams)
        return out

    @torch.inference_mode()
    def sample(self, prompt_ids: list[list[int]], response_ids: list[list[int]],
               streams: torch.Tensor, max_tokens: int, sampling: SamplingParams, *,
               top: bool = False, until_below: float | None = None) -> list[Continuation]:
        """Continue each ``prompt + response`` (token ids) by up to ``max_tokens`` tokens."""
        out: list[Continuation] = []
        for lo in range(0, len(prompt_ids), self.batch_size):
            hi = lo + self.batch_size
            st = SearchState(self.start([p + r for p, r in zip(prompt_ids[lo:hi],
                                                               response_ids[lo:hi])]))
            out += self.sample_chunk(st, response_ids[lo:hi], streams[lo:hi], max_tokens,
                                     sampling, top=top, until_below=until_below)[0]
        return out



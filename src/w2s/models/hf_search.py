"""The search cache of :class:`~w2s.models.hf.HFModel`: a batch decoded with a growing KV cache
(:class:`DecodeState`), the live candidates of a search inside it (:class:`SearchState`), and
the moves a search makes on them -- start, step, sample a chunk, keep/drop/copy rows -- plus
the text-level ``complete`` every backend has, built on them. A mixin: the model, its
tokenizer and its forward pass are :mod:`w2s.models.hf`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from w2s.models.base import Continuation, Request
from w2s.models.kv_cache import growing_cache, set_spare
from w2s.models.memory import MemoryPlan, log, plan_memory
from w2s.params import SamplingParams
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


class KVSearch:
    """Sampling and search over a KV cache (mixed into ``HFModel``)."""

    model: Any
    name: str
    vocab_size: int
    batch_size: int

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

    memory_limit: int | None = None
    """The most, in bytes, that weights and a search may take on this model's devices (a
    user's limit), or None: what is free."""
    _planned: int = 0

    def plan_memory(self, rows: int, length: int) -> MemoryPlan:
        """The memory a search of ``rows`` rows of ``length`` tokens needs here
        (:mod:`w2s.models.memory`)."""
        return plan_memory(self.model, self.kv_bytes_per_token(), self.vocab_size, rows, length,
                           self.memory_limit)

    def check_memory(self, rows: int, length: int) -> None:
        """Refuse, in one line naming the knob to lower, a search that cannot fit; log the
        plan (``w2s.stage``) the first time a search is this large."""
        plan = self.plan_memory(rows, length)
        if plan.search > self._planned:
            self._planned = plan.search
            log.info(plan.line(), extra={"keep": True})
        plan.check()

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



"""A base model behind an OpenAI-compatible ``/v1/completions`` endpoint (black box, HTTP).

Weak-to-strong search needs nothing from the base but sampled text (Zhou et al. 2024 steered
gpt-3.5-turbo-instruct through its API), and the models worth steering live in serving engines
(vLLM, SGLang, TGI, llama.cpp's server). :class:`OpenAIBackend` implements the text-level
:class:`~w2s.models.base.Backend` protocol over HTTP, so sampling, Best-of-N and CBS run on it
unchanged; token-level methods refuse it (it gives no next-token distribution).

- Each :class:`~w2s.models.base.Request` is one ``POST /v1/completions`` with ``prompt`` =
  the formatted prompt + the response so far, ``n`` = its random streams, ``max_tokens`` = the
  chunk length, ``stop``, ``temperature``, ``top_p`` (and vLLM's ``top_k``/``ignore_eos`` when
  set), and a ``seed`` derived from the row's random stream and its length, so runs repeat and
  rounds draw fresh randomness. Every kept prefix is sent again as a prompt: an engine with
  prefix caching (vLLM: ``--enable-prefix-caching``) serves it from cache.
- **Exact prefixes.** Where the engine takes token ids as the prompt (vLLM), a kept prefix is
  sent as the prompt's token ids (from the engine's own ``/tokenize``, once per prompt) + the
  response's sampled ids (vLLM's ``return_tokens_as_token_ids``): it is never re-tokenized, so
  the next chunk continues exactly the tokens sampled and the cache blocks match exactly. An
  engine without ``/tokenize`` gets text, with a one-line note (``token_prompts=None``, the
  default); ``token_prompts=True`` insists, ``False`` always sends text.
- ``logprobs=0`` asks for the sampled tokens, which count each choice's tokens exactly (some
  servers' ``usage`` counts one choice only); without them ``usage`` is split evenly.
- Chat models: the chat template is applied client-side from a tokenizer the user names, so a
  continuation of a partial assistant turn is exact (the chat endpoint cannot continue one).
- **Several replicas** go behind a router that hashes a header (vLLM's ``vllm-router
  --policy consistent_hash``): every request of one prompt carries the same
  ``X-Session-ID`` (``affinity_header``; a digest of the formatted prompt), so all its rounds
  reach the replica that caches its prefix, while prompts spread over replicas.
- **Overlap** (:class:`~w2s.models.base.OverlappingBackend`): a search splits its prompts into
  ``overlap`` groups (2 by default) run at once, so one group's guide scoring runs here while
  another group's requests wait on the engine; outputs are the same as one group at a time.
- Requests run concurrently (asyncio + ``httpx``), at most ``max_concurrency`` in flight
  (per group);
  429/5xx, timeouts and dropped connections are retried with exponential backoff and jitter
  (``tenacity``), honouring ``Retry-After``; when the budget is spent, one line says why.
- A stop string split across two chunks is found on the whole response text, client-side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from w2s.chat import messages_of, render
from w2s.errors import FieldError, W2SError
from w2s.models.base import Continuation, Request
from w2s.models.http import Transport, first_line, run_sync
from w2s.params import SamplingParams, sampling_fields
from w2s.rng import engine_seed
from w2s.stopping import first_stop

TOKEN_ID_PREFIX = "token_id:"
"""How vLLM writes a token with ``return_tokens_as_token_ids``."""

log = logging.getLogger("w2s")


PER_CALL = ("max_new_tokens", "seed")
"""Sampling fields each call sets itself (the tokens left, a seed per stream)."""


def engine_sampling(sampling: SamplingParams) -> dict[str, Any]:
    """``sampling`` as an engine's request fields, from :func:`w2s.params.sampling_fields`:
    OpenAI's own fields always (an empty one left out), an extension (vLLM's ``top_k``,
    ``ignore_eos``) only off its default, so a plain OpenAI server never sees one it does not
    know. A field no engine takes is refused off its default, naming it, never dropped."""
    out: dict[str, Any] = {}
    for f in sampling_fields():
        value = getattr(sampling, f.name)
        if f.name in PER_CALL or (f.engine != "standard" and value == f.default):
            continue
        if f.engine == "none":
            raise FieldError(f.openai, "cannot be sent to an OpenAI-compatible engine; leave "
                             "it at its default with an engine base")
        if value is not None and value != ():
            out[f.openai] = list(value) if isinstance(value, tuple) else value
    return out


class OpenAIBackend:
    """A base model served by an OpenAI-compatible engine.

    ``base_url``: the server's API root (``http://host:8000/v1``; ``/v1`` is added when
    missing). ``model``: the served model's name. ``api_key``: else ``$OPENAI_API_KEY``, else
    none. ``tokenizer``: a tokenizer (or its folder / hub id) whose chat template formats prompts
    when ``chat``.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 chat: bool = False, tokenizer: Any = None, max_concurrency: int = 64,
                 timeout: float = 120.0, max_retries: int = 6, batch_size: int = 256,
                 logprobs: bool = True, token_prompts: bool | None = None,
                 affinity_header: str | None = "X-Session-ID", overlap: int = 2) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise W2SError(f"base URL must start with http:// or https://, got {base_url!r}")
        if not model:
            raise FieldError("base.model", "is missing: give the served model's name")
        for name, v in (("max_concurrency", max_concurrency), ("batch_size", batch_size),
                        ("overlap", overlap)):
            if not isinstance(v, int) or v < 1:
                raise W2SError(f"{name} must be >= 1, got {v!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise W2SError(f"max_retries must be >= 0, got {max_retries!r}")
        if not timeout > 0:
            raise W2SError(f"timeout must be > 0 seconds, got {timeout!r}")
        if token_prompts not in (None, True, False):
            raise W2SError(f"token_prompts must be true, false or unset, got {token_prompts!r}")
        if token_prompts and not logprobs:
            raise W2SError("token_prompts needs logprobs: the sampled tokens' ids come with "
                           "their log-probabilities")
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self.model = model
        self.name = f"{model}@{self.base_url}"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.chat = chat
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self.batch_size = batch_size
        self.logprobs = logprobs
        self.token_prompts = token_prompts
        self.affinity_header = affinity_header
        self.overlap = overlap
        self._ids: dict[str, list[int]] = {}  # formatted prompt -> the engine's token ids
        if isinstance(tokenizer, str):
            from w2s.models.loading import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        if chat and not getattr(tokenizer, "chat_template", None):
            raise FieldError("base.tokenizer", f"must have a chat template when chat is on "
                             f"({self.name}): the template is applied client-side so a "
                             "partial assistant turn can be continued")
        self._checked = False
        self.stats = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "token_prompts": 0}
        self.transport = Transport(self.base_url, api_key=self.api_key,
                                   max_concurrency=max_concurrency, timeout=timeout,
                                   max_retries=max_retries, affinity_header=affinity_header,
                                   stats=self.stats)

    # ---------------------------------------------------------------- prompts
    def format_prompt(self, prompt: str) -> str:
        """The text the engine continues: the chat template's rendering of a
        :class:`~w2s.chat.ChatPrompt` (or of one user turn when ``chat``), or the prompt."""
        if messages_of(prompt, self.chat) is None:
            return prompt
        if self.tokenizer is None:
            raise FieldError("base.tokenizer", f"is needed to format chat messages for "
                             f"{self.name}: a tokenizer with a chat template")
        return render(self.tokenizer, prompt, self.chat, self.name) or prompt

    def prompt_tokens(self, prompt: str) -> int | None:
        """:class:`~w2s.models.base.PromptCounter`: with a tokenizer, the formatted prompt's
        tokens (the engine's count may differ by a BOS token); without one, None."""
        if self.tokenizer is None:
            return None
        return len(self.tokenizer(self.format_prompt(prompt), add_special_tokens=False)
                   ["input_ids"])

    def check_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> None:
        """Reach the server once and check it serves ``model`` (one line if not); the engine
        itself refuses a prompt longer than its context, in one line too."""
        for p in prompts:
            if not self.format_prompt(p):
                raise W2SError(f"the prompt {p!r} is empty; an engine needs text to continue")
        if not self._checked:
            run_sync(self._check_server())
            self._checked = True

    async def _check_server(self) -> None:
        served = await self._served()
        if served and self.model not in served:
            raise FieldError("base.model", f"{self.model!r} is not served by {self.base_url}, "
                             f"which serves {', '.join(map(str, served))}", sep=": ")

    def served_models(self) -> list[str] | None:
        """The model names ``GET /models`` lists (None: the server has no such list); one
        line if the server cannot be reached or refuses the key."""
        return run_sync(self._served())

    async def _served(self) -> list[str] | None:
        import httpx

        async with self.transport.client() as client:
            try:
                r = await client.get("/models", timeout=min(self.timeout, 10.0))
            except httpx.HTTPError as e:
                raise W2SError(f"cannot reach {self.base_url} ({type(e).__name__}: "
                               f"{first_line(str(e)) or 'no answer'})") from None
        if r.status_code in (401, 403):
            raise FieldError("base.api_key", f"was refused by {self.base_url} (HTTP "
                             f"{r.status_code}); give the engine's key (or set OPENAI_API_KEY)")
        if r.status_code != 200:
            return None  # a server without /models: the first completion says what is wrong
        try:
            return [str(m.get("id")) for m in r.json().get("data", [])]
        except (ValueError, AttributeError):
            return None

    # ------------------------------------------------------------- sampling
    def complete(self, requests: Sequence[Request], max_tokens: int,
                 sampling: SamplingParams) -> list[list[Continuation]]:
        return self._complete(requests, max_tokens, sampling, top=False)

    def complete_top(self, requests: Sequence[Request], max_tokens: int,
                     sampling: SamplingParams, *, until_below: float | None = None
                     ) -> list[list[Continuation]]:
        """:meth:`complete` with ``logprobs: 1``: each token's top-1 log-probability, and the
        text prefixes after each token (from the tokens' text). An engine cannot stop at an
        unsure token, so ``until_below`` is ignored (the caller cuts there)."""
        return self._complete(requests, max_tokens, sampling, top=True)

    def _complete(self, requests: Sequence[Request], max_tokens: int, sampling: SamplingParams,
                  top: bool) -> list[list[Continuation]]:
        if not top:  # Nudging cuts at a token's text: it needs the tokens' strings, not ids
            self.tokenize_prompts([r.prompt for r in requests])
        bodies = [self.body(r, max_tokens, sampling, token_ids=not top) for r in requests]
        self.stats["token_prompts"] += sum(isinstance(b["prompt"], list) for b in bodies)
        if top:
            for body in bodies:
                body["logprobs"] = 1
        keys = [self.affinity_key(r.prompt) for r in requests]
        answers = self.post_all_to("/completions", bodies, keys=keys)
        return [self._parse(data, req, sampling, top) for data, req in zip(answers, requests)]

    def affinity_key(self, prompt: str) -> str:
        """The key every request of one prompt carries (a digest of its formatted text): a
        router with consistent hashing sends them all to the replica that caches it."""
        import hashlib

        return hashlib.blake2b(self.format_prompt(prompt).encode(), digest_size=8).hexdigest()

    def loglik(self, prompts: Sequence[str], responses: Sequence[str]
               ) -> list[tuple[float, int]]:
        """``(sum of log p_base(token), number of tokens)`` of each response after its prompt,
        from the engine's echoed prompt log-probabilities (``echo``, ``max_tokens: 0``). The
        engine re-tokenizes prompt + response; a token that straddles the boundary counts as
        the response's, and the end of the sequence is not scored (the text does not show
        whether it ended)."""
        bodies = [{"model": self.model, "prompt": self.format_prompt(p) + r, "max_tokens": 0,
                   "echo": True, "logprobs": 0, "temperature": 0.0} if r else None
                  for p, r in zip(prompts, responses)]
        return [self._echoed(data, r) if data is not None else (0.0, 0)
                for data, r in zip(self._post_all(bodies), responses)]

    def _echoed(self, data: dict[str, Any], response: str) -> tuple[float, int]:
        """The log-probability sum and count of the echoed tokens that make ``response``."""
        try:
            lp = data["choices"][0]["logprobs"]
            tokens, lps, offsets = lp["tokens"], lp["token_logprobs"], lp["text_offset"]
        except (KeyError, IndexError, TypeError):
            raise W2SError(f"{self.base_url}/completions gave no echoed log-probabilities "
                           "(it needs echo with logprobs)") from None
        end = offsets[-1] + len(tokens[-1])
        start = end - len(response)  # offsets index the tokens' joined text
        picked = [x for t, o, x in zip(tokens, offsets, lps) if o + len(t) > start]
        return float(sum(x for x in picked if x is not None)), len(picked)

    def _post_all(self, bodies: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
        """POST every body to ``/completions`` concurrently (at most ``max_concurrency`` in
        flight); answers in order, None where the body is None."""
        return self.post_all_to("/completions", bodies)

    def post_all_to(self, path: str, bodies: Sequence[dict[str, Any] | None], *,
                    missing_ok: bool = False, keys: Sequence[str | None] | None = None
                    ) -> list[Any]:
        """POST every body to ``path`` through the transport (:meth:`Transport.post_all`)."""
        return self.transport.post_all(path, bodies, missing_ok=missing_ok, keys=keys)

    def tokenize_prompts(self, prompts: Sequence[str]) -> None:
        """Learn each formatted prompt's token ids from the engine's ``/tokenize`` (once per
        prompt), so requests can send token ids; the first time, whether the engine has it."""
        if self.token_prompts is False or not self.logprobs:
            return
        todo = list(dict.fromkeys(t for t in map(self.format_prompt, prompts)
                                  if t not in self._ids))
        if not todo:
            return
        answers = self.engine_tokenize(todo)
        root = self.base_url.removesuffix("/v1")
        if answers is None:
            if self.token_prompts:
                raise W2SError(f"{root} has no usable /tokenize: it cannot take token-id prompts "
                               "(token_prompts false sends text)")
            log.warning("%s has no usable /tokenize: prefixes are sent as text (re-tokenized by the "
                        "engine each round)", root)
            self.token_prompts = False
            return
        self._ids.update(zip(todo, answers))
        self.token_prompts = True if self.token_prompts is None else self.token_prompts

    def engine_tokenize(self, texts: Sequence[str]) -> list[list[int]] | None:
        """Each text's token ids by the engine's own tokenizer (vLLM's and SGLang's
        ``/tokenize``, special tokens added as a text prompt gets them); None when the engine
        has no ``/tokenize`` that w2s can use: none, or one that gives no token for a text that
        has some (llama.cpp's reads ``content``, not ``prompt``)."""
        root = self.base_url.removesuffix("/v1")
        answers = self.post_all_to(root + "/tokenize", [{"model": self.model, "prompt": t}
                                                        for t in texts], missing_ok=True)
        if any(a is None for a in answers):
            return None
        out = []
        for text, a in zip(texts, answers):
            ids = a.get("tokens") if isinstance(a, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise W2SError(f"{root}/tokenize answered without token ids")
            if text.strip() and not ids:
                return None
            out.append(ids)
        return out

    def body(self, req: Request, max_tokens: int, sampling: SamplingParams, *,
             token_ids: bool = True) -> dict[str, Any]:
        """The JSON body of one request (public: tests and docs show exactly what is sent).
        With ``token_ids`` and the prompt's ids known (:meth:`tokenize_prompts`), the prompt
        is the token ids of prompt + response when the response's ids are known."""
        text = self.format_prompt(req.prompt)
        prompt: str | list[int] = text + req.response
        exact = token_ids and self.token_prompts and text in self._ids
        if exact and (req.response_ids is not None or not req.response):
            prompt = self._ids[text] + list(req.response_ids or ())
        body: dict[str, Any] = {
            "model": self.model, "prompt": prompt, **engine_sampling(sampling),
            "max_tokens": max_tokens, "n": len(req.streams),
            "seed": engine_seed(req.streams[0], req.tokens),
        }
        if self.logprobs:
            body["logprobs"] = 0
        if exact:
            body["return_tokens_as_token_ids"] = True  # vLLM: the next round sends them back
        return body

    def _parse(self, data: dict[str, Any], req: Request, sampling: SamplingParams,
               top: bool = False) -> list[Continuation]:
        n = len(req.streams)
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        except (KeyError, TypeError):
            raise W2SError(f"{self.base_url}/completions answered without choices") from None
        if len(choices) != n:
            raise W2SError(f"{self.base_url}/completions returned {len(choices)} choices for "
                           f"n={n}")
        usage = data.get("usage") or {}
        self.stats["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
        self.stats["completion_tokens"] += int(usage.get("completion_tokens") or 0)
        out = []
        for c in choices:
            text = c.get("text") or ""
            logprobs = standard_logprobs(c.get("logprobs"))
            tokens = logprobs.get("tokens")
            n_tokens = len(tokens) if tokens is not None else round(
                int(usage.get("completion_tokens") or 0) / n)
            response, ended = req.response + text, c.get("finish_reason") != "length"
            cut = first_stop(response, sampling.stop)
            if cut >= 0:  # a stop string the engine could not see: it spans two chunks
                response, ended = response[:cut], True
            lps = logprobs.get("token_logprobs")
            ids = _token_ids(tokens) if cut < 0 else None  # a cut: the ids overrun the text
            cont = Continuation(response, ids, n_tokens, "stop" if ended else "length",
                                logprob=None if not lps or None in lps else float(sum(lps)))
            if top:
                cont.top_logprobs, cont.prefixes = self._top(logprobs, req.response, text,
                                                             response)
            out.append(cont)
        return out

    def _top(self, logprobs: dict[str, Any], before: str, text: str, response: str
             ) -> tuple[list[float], list[str]]:
        """Top-1 log-probability per token and the response after each token, from the
        standard completions ``logprobs`` (tokens' text and ``top_logprobs``)."""
        tokens, tops = logprobs.get("tokens"), logprobs.get("top_logprobs")
        if tokens is None or tops is None or len(tokens) != len(tops):
            raise W2SError(f"{self.base_url}/completions gave no top log-probabilities "
                           "(this method needs logprobs=1)")
        best = [max(t.values()) if t else 0.0 for t in tops]
        ends, at = [], 0
        for tok in tokens:  # a token's text; partial UTF-8 bytes count as nothing
            at = min(len(text), at + (0 if tok.startswith("bytes:") else len(tok)))
            ends.append(at)
        prefixes = [before] + [(before + text[:e])[: len(response)] for e in ends]
        return best, prefixes


def standard_logprobs(lp: Any) -> dict[str, Any]:
    """A choice's ``logprobs`` in the completions API's shape (``tokens``, ``token_logprobs``,
    ``top_logprobs``): as it came, or converted from the chat-style list that llama.cpp's
    server sends on ``/v1/completions`` too (``{"content": [{"token", "logprob",
    "top_logprobs": [{"token", "logprob"}]}]}``)."""
    if not isinstance(lp, dict):
        return {}
    items = lp.get("content")
    if "tokens" in lp or not isinstance(items, list):
        return lp
    try:
        return {"tokens": [it["token"] for it in items],
                "token_logprobs": [it["logprob"] for it in items],
                "top_logprobs": [{t["token"]: t["logprob"] for t in it.get("top_logprobs") or []}
                                 for it in items]}
    except (KeyError, TypeError):
        return {}


def _token_ids(tokens: list[str] | None) -> list[int] | None:
    """The ids of tokens written ``token_id:N`` (vLLM's ``return_tokens_as_token_ids``);
    None when any is not (the engine ignored the option)."""
    if not tokens:
        return None if tokens is None else []
    ids = []
    for t in tokens:
        if not isinstance(t, str) or not t.startswith(TOKEN_ID_PREFIX):
            return None
        try:
            ids.append(int(t[len(TOKEN_ID_PREFIX):]))
        except ValueError:
            return None
    return ids

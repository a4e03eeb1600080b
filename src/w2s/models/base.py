"""The capability protocols: what a backend can do, declared, so decoders never guess.

- :class:`Backend` is the least any base model offers, a remote text-completion engine
  included: prompt *text* in, continuations of prompt + response-so-far out (``n`` per request,
  one random stream each), up to ``max_tokens`` tokens, stop strings, and a finish reason per
  continuation. Sampling, Best-of-N and CBS need only this.
- :class:`SearchBackend` also keeps per-row state across the rounds of a search (a KV cache per
  candidate): open it for the prompts, ``reindex`` rows (expand = copy a parent's row, select =
  drop the losers), sample a chunk for every row. Decoders use it when it is there, and give
  exactly the same outputs without it (tests pin this), only slower.
- :class:`LogitsBackend` gives next-token logits over a token vocabulary (token-level methods:
  EFT and every other fusion rule).
- :class:`TopLogprobsBackend` reports the top-1 log-probability at each sampled token and where
  each token ends in the text (an API's ``logprobs=1``): Nudging needs it.
- :class:`TextScoringBackend` scores given text (an API's echoed log-probabilities): evaluation
  reports the base's log-likelihood of an output with it when the base is a black box.
- :class:`TokenScoringBackend` scores given text token by token (WSD's switch).
- :class:`ScoringLM` scores given token ids (log-likelihood of continuations): the guides'
  models and the eval's fluency metric need only this.
- :class:`PromptCounter` counts a prompt's tokens (the server's ``usage``).
- :class:`ParamCount` knows its number of parameters (FLOP estimates).

Decoders dispatch with ``isinstance`` on these protocols (they are ``runtime_checkable``); a
method whose capability is missing fails in one line that names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from w2s.params import SamplingParams
from w2s.stopping import Stopper

if TYPE_CHECKING:  # annotations only: the protocols load without torch (fast --help)
    import torch

FinishReason = Literal["stop", "length"]


@dataclass
class Continuation:
    """One sampled continuation of a (prompt, response so far) row."""

    response: str
    """The whole response after this continuation (not only the new part), cut before the first
    stop string: decoding new tokens alone could split a character the prefix began."""
    token_ids: list[int] | None
    """The new tokens in the backend's vocabulary; None when the engine reports text only."""
    n_tokens: int
    """How many tokens were sampled (what the max_new_tokens budget and the cost count)."""
    finish_reason: FinishReason
    """``stop``: the model ended it (EOS or a stop string); ``length``: out of ``max_tokens``."""
    top_logprobs: list[float] | None = None
    """Per new token, the log-probability of the most likely token at that position (the
    model's own distribution, before temperature); only from :class:`TopLogprobsBackend`."""
    prefixes: list[str] | None = None
    """``prefixes[i]``: the whole response after the first ``i`` new tokens (``i = 0..n``);
    only from :class:`TopLogprobsBackend`, so a decoder can cut a continuation at a token."""
    logprob: float | None = None
    """The log-probability of the new tokens under the model's own distribution (before
    temperature), summed: MCTS's prior. In-process backends always report it, an engine when
    it reports the sampled tokens' log-probabilities (``logprobs=0``); else None."""

    @property
    def ended(self) -> bool:
        return self.finish_reason == "stop"


@dataclass(frozen=True)
class Request:
    """Continue ``prompt`` + ``response`` ``len(streams)`` times (OpenAI's ``n``).

    ``streams`` name the continuations' random streams (see :mod:`w2s.rng`): a backend that can
    honour them draws token ``t`` of a response with the uniform of position ``t``, so a
    continuation does not depend on which other rows share the batch; an engine that takes
    only a seed per request derives it from the first stream and ``tokens``. ``response_ids`` are the
    response's tokens as this backend returned them (None: it re-encodes ``response``).
    """

    prompt: str
    response: str = ""
    response_ids: tuple[int, ...] | None = None
    streams: tuple[int, ...] = (0,)
    tokens: int = 0
    """How many tokens the response so far holds (a position, for engines that take seeds)."""


@runtime_checkable
class Backend(Protocol):
    """What every base model offers: text in, sampled continuations out."""

    name: str
    batch_size: int
    """How many rows one call should carry (bounds memory, or requests in flight)."""

    def check_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> None:
        """Refuse, in one line and before any sampling, a prompt this backend cannot take
        (e.g. prompt + ``max_new_tokens`` longer than the context)."""
        ...

    def complete(self, requests: Sequence[Request], max_tokens: int,
                 sampling: SamplingParams) -> list[list[Continuation]]:
        """For each request, ``len(request.streams)`` continuations of up to ``max_tokens``
        tokens (ending early at EOS or a stop string, unless ``sampling.ignore_eos``)."""
        ...


@runtime_checkable
class SearchBackend(Backend, Protocol):
    """A backend that keeps per-row state (a KV cache per candidate) across search rounds."""

    def open_search(self, prompts: Sequence[str], max_new_tokens: int,
                    rows_per_prompt: int) -> Any:
        """State whose row ``i`` is prompt ``i``'s empty response; refuses, in one line, a
        search of ``rows_per_prompt`` rows per prompt that cannot fit in memory."""
        ...

    def reindex(self, state: Any, rows: Sequence[int], spare: int) -> Any:
        """New row ``j`` = old row ``rows[j]`` (copies, drops and reorders rows at once);
        ``spare``: tokens each row is about to grow by."""
        ...

    def sample_chunk(self, state: Any, responses: Sequence[Sequence[int]], streams: torch.Tensor,
                     max_tokens: int, sampling: SamplingParams
                     ) -> tuple[list[Continuation], Any]:
        """Up to ``max_tokens`` new tokens for every row; ``responses[j]`` are row ``j``'s
        response tokens so far, ``streams`` ``(rows,)`` its random stream."""
        ...


@runtime_checkable
class TopLogprobsBackend(Backend, Protocol):
    """A backend that reports how sure the model was at each sampled token: the top-1
    log-probability per position (an API's ``logprobs=1``), and where each token ends."""

    def complete_top(self, requests: Sequence[Request], max_tokens: int,
                     sampling: SamplingParams, *, until_below: float | None = None
                     ) -> list[list[Continuation]]:
        """:meth:`Backend.complete`, with ``top_logprobs`` and ``prefixes`` set. With
        ``until_below``, a continuation may end (``length``) right after the first token whose
        top-1 log-probability is below it: the caller cuts there anyway, and an in-process
        model saves the tokens after it (an engine cannot stop there and ignores it)."""
        ...


@runtime_checkable
class TextScoringBackend(Backend, Protocol):
    """A backend that scores given text: the log-likelihood of a response after its prompt
    (an API's echoed prompt log-probabilities). Evaluation measures fluency with it."""

    def loglik(self, prompts: Sequence[str], responses: Sequence[str]
               ) -> list[tuple[float, int]]:
        """``(sum of log-probabilities, number of tokens)`` of each response."""
        ...


@runtime_checkable
class TokenScoringBackend(Backend, Protocol):
    """A backend that scores given text token by token in its own vocabulary (an in-process
    model): WSD re-tokenises the small model's draft and reads the base's probability of each
    draft token to decide where the base takes over."""

    def encode_prompt(self, prompt: str) -> list[int]: ...

    def encode_responses(self, texts: Sequence[str]) -> list[list[int]]: ...

    def token_logprobs(self, prefixes: Sequence[Sequence[int]],
                       targets: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """``log p(target_t | prefix, target_<t)`` of every target token, one tensor a row."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...


@runtime_checkable
class ScoringLM(Protocol):
    """A language model that scores given continuations: the log-likelihood of response token
    ids (in its own vocabulary) after each prompt, formatted its own way. The guides' models
    and the eval's fluency metric are typed against it, so anything that can score (an
    in-process model, or one behind an engine that echoes log-probabilities) can serve."""

    name: str

    @property
    def eos_id(self) -> int | None:
        """The end-of-sequence token a finished response is scored with (None: none)."""
        ...

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids, formatted as this model expects (chat template or plain)."""
        ...

    def encode_responses(self, texts: Sequence[str]) -> list[list[int]]:
        """Response token ids, no special tokens added."""
        ...

    def token_loglik(self, prompts: Sequence[str], responses: Sequence[Sequence[int]]
                     ) -> list[float]:
        """``sum_t log p(y_t | prompt, y_<t)`` of each response's token ids."""
        ...


@runtime_checkable
class OverlappingBackend(Backend, Protocol):
    """A backend whose calls mostly wait on something else (an engine over HTTP): a search
    runs ``overlap`` groups of prompts at once, so that one group's guide scoring (here) runs
    while another group waits for its samples (there). Outputs do not change: every row's
    randomness is its own stream, whatever group it is in."""

    overlap: int


class TokenLoglik:
    """:meth:`ScoringLM.token_loglik` for a model that has ``encode_prompt`` and per-token
    ``token_logprobs(prefixes, targets)`` (in process, or served by an engine)."""

    def token_loglik(self, prompts: Sequence[str], responses: Sequence[Sequence[int]]
                     ) -> list[float]:
        """``sum_t log p(y_t | prompt, y_<t)`` of each response's token ids."""
        lps = self.token_logprobs([self.encode_prompt(p) for p in prompts],  # type: ignore[attr-defined]
                                  [list(x) for x in responses])
        return [float(x.double().sum()) for x in lps]


@runtime_checkable
class PromptCounter(Protocol):
    """A backend that knows how many tokens a prompt takes (the server's ``usage``)."""

    def prompt_tokens(self, prompt: str) -> int | None:
        """Tokens of ``prompt`` as this backend formats it (None: it cannot tell)."""
        ...


@runtime_checkable
class ParamCount(Protocol):
    """A model that knows its size (the compute axis' FLOP estimates)."""

    @property
    def n_params(self) -> int:
        """Parameters a token passes through in one forward pass."""
        ...


class StepState(Protocol):
    """A batch mid-decoding inside a :class:`LogitsBackend`."""

    logits: torch.Tensor
    """``(B, V)`` next-token logits of every row."""


@runtime_checkable
class LogitsBackend(Backend, Protocol):
    """A backend that exposes next-token logits over a token vocabulary."""

    vocab_size: int
    """Ids ``[0, vocab_size)`` are tokens it can produce (logits are sliced to this)."""

    @property
    def vocabulary(self) -> Mapping[str, int]:
        """Token -> id: two backends can share per-token arithmetic only if these are equal."""
        ...

    @property
    def device(self) -> torch.device: ...

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids, formatted as this model expects (chat template or plain)."""
        ...

    def start(self, seqs: Sequence[Sequence[int]]) -> StepState:
        """Encode a batch of token sequences; the state holds each row's next-token logits."""
        ...

    def step(self, state: StepState, tokens: torch.Tensor) -> StepState:
        """Feed one token per row ``(B,)``; return the advanced state."""
        ...

    def stopper(self, sampling: SamplingParams) -> Stopper:
        """Decides when a response of this model's tokens ended, and its text."""
        ...

"""The knobs of every decoder, as frozen dataclasses.

Why frozen dataclasses: they are validated once at construction (errors name the knob), they are
hashable and serialisable, so every result row can echo exactly the parameters that made it, and
they never hold models or tokenizers (as vLLM's ``SamplingParams`` and ``transformers``'
``GenerationConfig`` don't), so one set of knobs can be reused across backends and requests.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from w2s.errors import FieldError, W2SError

_NAMED = re.compile(r"^([a-z_][a-z0-9_]*) (must .*)$")


def _check(cond: bool, msg: str) -> None:
    """Raise ``msg`` unless ``cond``; a message that opens with the field's name (``w must be
    >= 1``) is a :class:`~w2s.errors.FieldError` for that field, so each face can name it in
    its own terms (``w2s.w``, ``methods[2].w``, ``--w``)."""
    if not cond:
        m = _NAMED.match(msg)
        if m:
            raise FieldError(m.group(1), m.group(2))
        raise W2SError(msg)


def _integer(name: str, v: Any) -> None:
    _check(isinstance(v, int) and not isinstance(v, bool), f"{name} must be an integer, got {v!r}")


def _number(name: str, v: Any) -> None:
    _check(isinstance(v, (int, float)) and not isinstance(v, bool),
           f"{name} must be a number, got {v!r}")
    _check(math.isfinite(v), f"{name} must be a finite number, got {v!r}")


STABLE_FIELDS: dict[str, frozenset[str]] = {
    "SamplingParams": frozenset({"max_new_tokens", "temperature", "top_p", "top_k", "stop",
                                 "seed", "ignore_eos"}),
    "SearchParams": frozenset({"w", "k", "l", "schedule"}),
    "BestOfNParams": frozenset({"n"}),
    "EFTParams": frozenset({"beta"}),
    "DLFParams": frozenset({"alpha_max"}),
    "NudgingParams": frozenset({"gamma", "chunk", "word_tokens"}),
    "PrunedBoNParams": frozenset({"n", "prune", "every"}),
    "ParticleParams": frozenset({"particles", "chunk", "tau", "ess"}),
    "TreeBoNParams": frozenset({"n", "branch", "first", "per_token"}),
    "MCTSParams": frozenset({"expansions", "k", "l", "c", "prior"}),
}
"""Each class's fields when results folders first recorded them (2026-12): they enter an
identity whatever their value, as they always did, so those folders still resume. Never add
to it: a field added since enters an identity only when set off its default."""


def identity(params: Any) -> dict[str, Any]:
    """What of a knob or sampling object (a dataclass with ``to_dict``, a plugin's too) a
    results folder's hash covers: the :data:`STABLE_FIELDS`, and any other field only when
    set off its default (as ``GenerationConfig.to_diff_dict`` does), so adding a field leaves
    every eval and distill folder resumable while a changed default still changes the hash."""
    cls = type(params)
    stable = STABLE_FIELDS.get(cls.__name__, frozenset()) if cls.__module__ == __name__ \
        else frozenset()
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING
                else f.default_factory()  # type: ignore[misc]
                for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING}
    plain = dataclasses.replace(params, **defaults).to_dict()
    return {k: v for k, v in params.to_dict().items()
            if k in stable or k not in plain or v != plain[k]}


class _Params:
    """Shared helpers: JSON round-trip."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):  # noqa: ANN206
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        _check(not unknown, f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class SamplingParams(_Params):
    """How the base model samples tokens (shared by every decoder)."""

    max_new_tokens: int = field(default=50, metadata={"openai": "max_tokens"})
    """Maximum number of response tokens."""
    temperature: float = 0.7
    """Softmax temperature; 0 means greedy (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens with total probability >= top_p."""
    top_k: int = field(default=0, metadata={"engine": "extension"})
    """Keep only the k most likely tokens (0 = no limit)."""
    stop: tuple[str, ...] = field(default_factory=tuple)
    """Strings that end a response; the response text is cut before the stop string."""
    seed: int | None = None
    """Random seed: a response is a deterministic function of (prompt, seed, knobs); none:
    fresh randomness on every call (as OpenAI and vLLM), the seed drawn recorded in the
    result's params."""
    ignore_eos: bool = field(default=False, metadata={"engine": "extension"})
    """Keep sampling past EOS up to max_new_tokens (benchmarks of fixed length)."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        _check(isinstance(self.stop, tuple), f"stop must be a string or a list of strings, got "
               f"{self.stop!r}")
        for name in ("max_new_tokens", "top_k") + (("seed",) if self.seed is not None else ()):
            _integer(name, getattr(self, name))
        for name in ("temperature", "top_p"):
            _number(name, getattr(self, name))
        _check(isinstance(self.ignore_eos, bool), f"ignore_eos must be true or false, got "
               f"{self.ignore_eos!r}")
        _check(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        _check(self.seed is None or -(2**63) <= self.seed < 2**63, f"seed must be a 64-bit "
               f"signed integer (-2**63 to 2**63-1), got {self.seed}")
        _check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}")
        _check(all(isinstance(s, str) for s in self.stop),
               f"stop must be a string or a list of strings, got {list(self.stop)!r}")
        _check(all(self.stop), "stop must not hold an empty string")

    @property
    def truncates(self) -> bool:
        """Whether a filter cuts the tempered distribution (top-k, top-p): token-level KLs are
        then of the distributions before the cut (``untruncated``). A new filter says so here."""
        return self.top_p < 1 or self.top_k > 0


@dataclass(frozen=True)
class SamplingField:
    """How one :class:`SamplingParams` field shows on the OpenAI surface (the server's
    requests, its defaults file, ``/w2s/methods``, the playground, an engine's request body),
    read from the field's ``metadata``: ``openai`` names it there when the name differs,
    ``engine`` says whether an OpenAI-compatible engine takes it ("standard": OpenAI's own,
    "extension": vLLM's and SGLang's, sent only off its default; "none": it cannot be sent, so
    an engine base refuses a value off the default). A new field declares these where it is
    declared and reaches every face with no other change."""

    name: str
    openai: str
    type: Any
    default: Any
    doc: str
    engine: str

    @property
    def kind(self) -> str:
        """Its JSON type: integer, number, boolean, string, or array (of strings)."""
        base = self.type
        if getattr(base, "__origin__", None) is tuple:
            return "array"
        args = [a for a in getattr(base, "__args__", (base,)) if a is not type(None)]
        return {int: "integer", float: "number", bool: "boolean"}.get(args[0], "string")


@functools.cache
def sampling_fields() -> tuple[SamplingField, ...]:
    """Every :class:`SamplingParams` field with its OpenAI name and engine support: the one
    table each face of the OpenAI surface is generated from."""
    import typing

    hints, docs, plain = typing.get_type_hints(SamplingParams), field_docs(SamplingParams), \
        SamplingParams()
    out = []
    for f in dataclasses.fields(SamplingParams):
        engine = f.metadata.get("engine", "standard")
        if engine not in ("standard", "extension", "none"):
            raise ValueError(f"SamplingParams.{f.name}: engine must be standard, extension or "
                             f"none, got {engine!r}")
        out.append(SamplingField(f.name, f.metadata.get("openai", f.name), hints[f.name],
                                 getattr(plain, f.name), docs.get(f.name, ""), engine))
    return tuple(out)


@dataclass(frozen=True)
class SearchParams(_Params):
    """Chunk-level beam search (weak-to-strong search) knobs: beam width W, successors K, chunk L."""

    w: int = 4
    """Beam width: partial responses kept after each round."""
    k: int = 4
    """Successors sampled per kept (unfinished) entry each round."""
    l: int = 5  # noqa: E741 - the paper's name for the chunk length
    """Chunk length: base tokens sampled per successor per round."""
    schedule: str = ""
    """Per-round beam width and successors instead of W and K, as W:K,W:K,... (the last pair
    repeats), e.g. 8:4,4:4,2:4 spends more candidates on the first chunks (AdaSearch); or the
    preset adasearch[:DECAY]: round r keeps floor(w DECAY^(r-1)) (at least 1) of k successors
    each, DECAY 0.5 unless given (a budget sizes w)."""

    def __post_init__(self) -> None:
        for name in ("w", "k", "l"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")
        _check(isinstance(self.schedule, str), f"schedule must be a string like 8:4,4:4, got "
               f"{self.schedule!r}")
        if self.schedule:
            _check(self.decay() is not None or (self.w, self.k) == (4, 4),
                   "give w and k, or a schedule, not both")
            self.rounds()

    def decay(self) -> float | None:
        """The AdaSearch preset's decay (``adasearch[:DECAY]``), or None for other schedules."""
        name, _, value = self.schedule.partition(":")
        if name != "adasearch":
            return None
        try:
            d = float(value) if value else 0.5
        except ValueError:
            d = math.nan
        _check(0 < d < 1, f"schedule must be adasearch or adasearch:DECAY with DECAY in (0, 1), "
               f"got {self.schedule!r}")
        return d

    def rounds(self) -> list[tuple[int, int]]:
        """``[(W_1, K_1), (W_2, K_2), ...]``; the last one repeats (``[(w, k)]`` without a
        schedule; the preset's widths fall to 1, which repeats)."""
        if not self.schedule:
            return [(self.w, self.k)]
        d = self.decay()
        if d is not None:
            widths = [self.w]
            while widths[-1] > 1 and len(widths) <= 64:
                widths.append(max(1, math.floor(self.w * d ** len(widths) + 1e-9)))
            _check(len(widths) <= 64, f"schedule must have at most 64 rounds, got {len(widths)}")
            return [(w, self.k) for w in widths]
        out = []
        for part in self.schedule.split(","):
            try:
                w, k = (int(x) for x in part.split(":"))
            except ValueError:
                raise FieldError("schedule", "must be W:K pairs separated by commas, e.g. "
                                 f"8:4,4:4; got {self.schedule!r}") from None
            _check(w >= 1 and k >= 1, f"schedule must have W and K >= 1, got {part!r}")
            out.append((w, k))
        _check(len(out) <= 64, f"schedule must have at most 64 rounds, got {len(out)}")
        return out

    def draws(self) -> list[int]:
        """Chunks one prompt's search draws in each round: W_1 K_1, then W_{r-1} K_r (the last
        one repeats): the rows its KV cache holds, and how often one prefix can be drawn."""
        r = self.rounds()
        return [r[0][0] * r[0][1]] + [a[0] * b[1] for a, b in zip(r, r[1:])] + (
            [r[-1][0] * r[-1][1]] if len(r) > 1 else [])

    def max_rows(self) -> int:
        """Most candidate rows one prompt holds in a round (the memory plan)."""
        return max(self.draws())

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if not self.schedule:  # the same dict (and eval hashes) as before schedules existed
            d.pop("schedule")
        return d


@dataclass(frozen=True)
class BestOfNParams(_Params):
    """Best-of-N: N complete base samples, the guide picks one."""

    n: int = 16
    """Number of complete samples drawn from the base."""

    def __post_init__(self) -> None:
        _integer("n", self.n)
        _check(self.n >= 1, f"n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class EFTParams(_Params):
    """Emulated fine-tuning / proxy tuning: log p = log pi_base + beta (log pi_tuned - log pi_untuned)."""

    beta: float = 1.0
    """Strength of the small pair's shift (0 = the base model alone)."""

    def __post_init__(self) -> None:
        _number("beta", self.beta)
        _check(self.beta >= 0, f"beta must be >= 0, got {self.beta}")


@dataclass(frozen=True)
class DLFParams(_Params):
    """Dynamic Logit Fusion: the experts' strengths are chosen at every token so the fused
    model moves from the base as far as the small experts move from their untuned model."""

    alpha_max: float = 2.0
    """Largest strength of any expert's shift (log pi_tuned - log pi_untuned) at a step."""

    def __post_init__(self) -> None:
        _number("alpha_max", self.alpha_max)
        _check(0 < self.alpha_max <= 100, f"alpha_max must be in (0, 100], got {self.alpha_max}")


@dataclass(frozen=True)
class NudgingParams(_Params):
    """Nudging: the base writes; where its top-1 token probability is below gamma, the small
    tuned model writes the next word."""

    gamma: float = 0.4
    """Hand over to the small model where the base's top-1 token probability is below this."""
    chunk: int = 16
    """Base tokens asked for per request (the text after a hand-over point is discarded)."""
    word_tokens: int = 8
    """At most this many small-model tokens for one word."""

    def __post_init__(self) -> None:
        _number("gamma", self.gamma)
        _check(0 <= self.gamma <= 1, f"gamma must be in [0, 1], got {self.gamma}")
        for name in ("chunk", "word_tokens"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")


@dataclass(frozen=True)
class WSDParams(_Params):
    """Weak-to-strong decoding: the small tuned model drafts the opening; the base takes over
    where its own confidence in the draft first reaches ``threshold`` and writes the rest."""

    threshold: float = 0.8
    """Switch at the first draft token where the geometric mean of the base's probabilities of
    the last ``window`` draft tokens reaches this."""
    window: int = 6
    """Draft tokens (the base's) the confidence is averaged over."""
    max_draft: int = 64
    """At most this many small-model tokens are drafted (the authors' example: 512 of a
    2048-token answer)."""

    def __post_init__(self) -> None:
        _number("threshold", self.threshold)
        _check(0 < self.threshold < 1, f"threshold must be in (0, 1), got {self.threshold}")
        for name in ("window", "max_draft"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")


@dataclass(frozen=True)
class PrunedBoNParams(_Params):
    """Early-pruned Best-of-N (Speculative Rejection): N candidates; at each checkpoint the
    guide scores the partial responses and the worst are dropped; survivors run to the end."""

    n: int = 16
    """Candidates sampled per prompt (the Best-of-N pool before any pruning)."""
    prune: float = 0.5
    """Share of a prompt's candidates dropped at each checkpoint (at least one is kept)."""
    every: int = 8
    """Base tokens between checkpoints (>= max_new_tokens: no pruning, Best-of-N exactly)."""

    def __post_init__(self) -> None:
        for name in ("n", "every"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")
        _number("prune", self.prune)
        _check(0 < self.prune < 1, f"prune must be in (0, 1), got {self.prune}")


@dataclass(frozen=True)
class ParticleParams(_Params):
    """Particle filtering (sequential Monte Carlo) over the base: P partial responses grown a
    chunk at a time, weighted by exp(guide increment / tau), resampled when their effective
    sample size falls below ess * P."""

    particles: int = 16
    """Partial responses carried per prompt (P)."""
    chunk: int = 8
    """Base tokens each live particle grows by per step."""
    tau: float = 1.0
    """Temperature of the weights exp(delta score / tau): small follows the guide closely,
    large is plain sampling of P responses."""
    ess: float = 0.5
    """Resample when the effective sample size (sum w)^2 / sum w^2 falls below ess * P."""

    def __post_init__(self) -> None:
        for name in ("particles", "chunk"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")
        _number("tau", self.tau)
        _check(self.tau > 0, f"tau must be > 0, got {self.tau}")
        _number("ess", self.ess)
        _check(0 < self.ess <= 1, f"ess must be in (0, 1], got {self.ess}")


@dataclass(frozen=True)
class TreeBoNParams(_Params):
    """TreeBoN: a tree of segments; at each layer the guide keeps the best partial responses
    and each branches into several children over the next, twice as long, segment."""

    n: int = 16
    """Nodes per layer (the Best-of-N budget: every layer grows n partial responses)."""
    branch: int = 4
    """Children per kept node (n / branch nodes are kept per layer; 1: Best-of-N exactly)."""
    first: int = 4
    """Tokens of the first segment; each next segment is twice as long."""
    per_token: bool = True
    """Rank partial responses by their score per base token (TreeBoN's length-normalised
    implicit reward); the final choice uses the whole response's score."""

    def __post_init__(self) -> None:
        for name in ("n", "branch", "first"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")
        _check(self.branch <= self.n, f"branch must be <= n ({self.n}), got {self.branch}")
        _check(isinstance(self.per_token, bool), f"per_token must be true or false, got "
               f"{self.per_token!r}")


@dataclass(frozen=True)
class MCTSParams(_Params):
    """Monte Carlo tree search over chunks of base tokens, valued by the guide."""

    expansions: int = 8
    """Nodes expanded per prompt (each samples k chunks): the search's budget."""
    k: int = 4
    """Chunks sampled from the base when a node is expanded (its children)."""
    l: int = 8  # noqa: E741 - the chunk length, as in CBS
    """Tokens per chunk."""
    c: float = 1.0
    """PUCT exploration constant: how much an unvisited child's prior outweighs its value."""
    prior: float = 1.0
    """Weight of the base's log-probability per token of a chunk in the PUCT prior, P(a)
    proportional to exp(prior * log p(a) / |a|) over siblings; 0: uniform."""

    def __post_init__(self) -> None:
        for name in ("expansions", "k", "l"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")
        for name in ("c", "prior"):
            v = getattr(self, name)
            _number(name, v)
            _check(v >= 0, f"{name} must be >= 0, got {v}")


@dataclass(frozen=True)
class QAlignParams(_Params):
    """QAlign / QUEST: Metropolis-Hastings chains over whole base responses whose target is
    pi_base(y) exp(r(y) / beta); each step resamples a suffix from a uniform cut."""

    steps: int = 16
    """Metropolis-Hastings steps per chain (each proposes one resampled suffix)."""
    chains: int = 4
    """Independent chains per prompt; their final states are the candidates."""
    beta: float = 1.0
    """Temperature of the target exp(r / beta): small follows the guide closely, large is
    the base's own distribution."""

    def __post_init__(self) -> None:
        for name in ("steps", "chains"):
            v = getattr(self, name)
            _integer(name, v)
            _check(v >= 1, f"{name} must be >= 1, got {v}")
        _number("beta", self.beta)
        _check(self.beta > 0, f"beta must be > 0, got {self.beta}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (they feed ``--help`` and the API docs).

    Read once per class: the source does not change while a process runs, and parsing it per
    request is what broke the server's methods list (CPython 3.11's AST builder raised
    "SystemError: AST constructor recursion depth mismatch" after a session of requests).
    Callers get a copy, so the cached one cannot be edited."""
    return dict(_read_field_docs(cls))


@functools.cache
def _read_field_docs(cls: type) -> dict[str, str]:
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs

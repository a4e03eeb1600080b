"""The decoder registry: the single source of truth for which methods exist.

Each entry says what a method is (name, one-line summary, its knob dataclass) and what it
needs (the base's capability protocols, the guide it needs, candidate rows per prompt) and what
it reports (the KL kind). ``w2s generate``'s ``--method`` choices, per-method flags and checks,
and the eval config's validation and dispatch are derived from it (and, next, the server's
request schema): adding a decoder is its file, its knob dataclass and one :func:`register`
call.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from w2s.errors import W2SError
from w2s.models.base import Backend, ParamCount
from w2s.params import SamplingParams, field_docs, sampling_fields
from w2s.plugins import Registry
from w2s.result import Result

if TYPE_CHECKING:
    from w2s.guides import Guide

GuideNeed = Literal["optional", "any", "pair"]
"""``optional``: scores its outputs when given one; ``any``: a pair, a reward model or a sum;
``pair``: a tuned/untuned pair alone (token-level arithmetic needs its two models, Nudging its
tuned model)."""
KLKind = Literal["exact", "bound", "none"]
"""What ``Result.stats`` holds: ``kl`` (exact, summed along the path), ``kl_bound``, or none."""



def lazy(target: str) -> Callable[..., Any]:
    """``"module:function"`` as a function that imports its module on the first call: the
    built-in decoders are registered this way, so listing them (``--help``, ``/w2s/methods``,
    config checks) does not import torch."""
    module, name = target.split(":")

    @functools.cache
    def resolve() -> Callable[..., Any]:
        return getattr(importlib.import_module(module), name)

    def call(*args: Any, **kwargs: Any) -> Any:
        return resolve()(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = module
    call.__doc__ = f"{target}, imported on first call."
    call.resolve = resolve  # type: ignore[attr-defined]  # the real function, imported now
    return call


def _one(params: Any) -> int:
    return 1


def check_budget(method: str, b: int, max_new: int) -> None:
    """A budget is a whole number of responses, at least one."""
    if not isinstance(b, int) or isinstance(b, bool) or b < 1:
        raise W2SError(f"{method}: a budget is a number of responses >= 1, got {b!r}")


@dataclass(frozen=True)
class Knob:
    """One knob of a decoder, as the faces show it."""

    name: str
    type: type
    default: Any
    doc: str

    @property
    def kind(self) -> str:
        """Its JSON type: integer, number, boolean or string."""
        return {int: "integer", float: "number", bool: "boolean"}.get(self.type, "string")


@dataclass(frozen=True)
class DecoderSpec:
    """One decoder: what it is, what it needs, what it reports."""

    name: str
    fn: Callable[..., list[Result]] | str
    """``fn(backend, guide, prompts, [params,] sampling=..., [return_all=...])``, or where it
    lives as ``"module:function"`` (the entry-point form), imported on its first call."""
    summary: str
    params: type | None = None
    """Its knob dataclass (frozen, validated), or None when it has no knobs."""
    needs: tuple[type, ...] = (Backend,)
    """Capability protocols the base must implement."""
    guide: GuideNeed = "any"
    rows_per_prompt: Callable[[Any], int] = _one
    """Candidate rows one prompt occupies, from the knobs (for batching and memory checks)."""
    kl: KLKind = "none"
    ranked: bool = False
    """Returns ranked candidates and accepts ``return_all``."""
    at_budget: Callable[[Any, int, int], Any] | str | None = None
    """``at_budget(knobs, b, max_new_tokens)``: the knobs, resized to spend at most ``b``
    responses' worth of base tokens (``b * max_new_tokens``) -- how budget-matched evals set
    each method; None for methods whose cost is fixed (sampling, token-level methods). It
    changes only the knobs it sizes (``dataclasses.replace``). A ``"module:function"`` string
    is imported on first call."""

    def __post_init__(self) -> None:
        for name in ("fn", "at_budget"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, lazy(getattr(self, name)))

    def knob_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.params)) if self.params is not None else []

    def knobs(self) -> list[Knob]:
        """Each knob's name, type, default and docstring: what every face shows (the CLI's
        flags, the server's schema and ``/w2s/methods``), read here once."""
        if self.params is None:
            return []
        hints, docs = typing.get_type_hints(self.params), field_docs(self.params)
        out = []
        for f in self.knob_fields():
            default = f.default if f.default is not dataclasses.MISSING else None
            out.append(Knob(f.name, hints.get(f.name, str), default, docs.get(f.name, "")))
        return out

    def make_params(self, values: dict[str, Any]) -> Any:
        """The knob dataclass from ``values`` (missing fields take their defaults)."""
        if self.params is None:
            if values:
                raise W2SError(f"{self.name} has no knobs, got {', '.join(values)}")
            return None
        known = {f.name for f in self.knob_fields()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise W2SError(f"unknown option(s) for {self.name}: {', '.join(unknown)} "
                           f"(its knobs: {', '.join(sorted(known))})")
        try:
            return self.params(**values)
        except TypeError as e:
            raise W2SError(f"{self.name}: {e}") from None

    def guide_problem(self, pair: bool, reward_model: bool, *,
                      pair_name: str = "a tuned/untuned pair",
                      rm_name: str = "a reward model") -> str | None:
        """Why a guide made of a pair and/or a reward model does not suit, or None (callers
        name the pair and the reward model as their users write them)."""
        if self.guide == "any" and not (pair or reward_model):
            return f"{self.name} needs a guide: {pair_name} or {rm_name}"
        if self.guide == "pair" and not (pair and not reward_model):
            return f"{self.name} needs {pair_name} as its guide and no {rm_name}"
        return None

    def check_guide(self, guide: Guide | None, *, pair_name: str = "a tuned/untuned pair",
                    rm_name: str = "a reward model") -> None:
        """Refuse, in one line, a loaded guide this decoder cannot use; the guide says what it
        is made of (:meth:`~w2s.guides.Guide.parts`, :meth:`~w2s.guides.Guide.expert`)."""
        from w2s.guides import Guide

        parts = [g for _, g in guide.parts()] if isinstance(guide, Guide) else []
        problem = self.guide_problem(any(g.expert() is not None for g in parts),
                                     any(g.expert() is None for g in parts),
                                     pair_name=pair_name, rm_name=rm_name)
        if problem:
            raise W2SError(problem)

    def check_backend(self, backend: object) -> None:
        """Refuse, in one line, a base that lacks a capability this decoder needs."""
        from w2s.decoding.common import require

        for cap in self.needs:
            require(backend, cap, self.name)

    def run(self, backend: Backend, guide: Guide | None, prompts: Sequence[str], params: Any,
            sampling: SamplingParams, *, return_all: bool = False) -> list[Result]:
        """Call the decoder with the uniform signature every caller uses."""
        from w2s.guides import Guide

        self.check_backend(backend)
        if isinstance(guide, Guide) and isinstance(sampling, SamplingParams):
            guide.check_prompts([prompts] if isinstance(prompts, str) else list(prompts),
                                sampling.max_new_tokens)
        args = (params,) if self.params is not None else ()
        kwargs = {"return_all": return_all} if self.ranked else {}
        import w2s.decoding.trace as trace

        # a recorded call's trees start empty, and end named by its results
        results = trace.traced(lambda: self.fn(backend, guide, prompts, *args,
                                               sampling=sampling, **kwargs))
        estimate_flops(results, backend, guide)
        return results


def estimate_flops(results: Sequence[Result], backend: object, guide: Guide | None) -> None:
    """``cost.flops`` = 2 * (base parameters * (sampled + read base tokens) + the guide's
    parameters per scored token * guide tokens): the compute axis' FLOPs, forward passes
    only (a model of unknown size counts 0)."""
    from w2s.guides import Guide

    n_base = backend.n_params if isinstance(backend, ParamCount) else 0
    n_guide = guide.n_params() if isinstance(guide, Guide) else 0
    for r in results:
        c = r.cost
        c.flops = 2.0 * (n_base * (c.base_tokens + c.base_read) + n_guide * c.guide_tokens)


COMMAND_OPTIONS = (
    "base", "base_url", "base_model", "base_tokenizer", "base_api_key", "api_key", "old_api_key",
    "max_concurrency", "prompt", "prompts_file", "dtype", "device", "batch_size", "device_map",
    "guide_device", "memory_limit", "tuned", "untuned", "arm", "reward_model", "guide_terms",
    "normalize", "as_json", "quiet", "out", "seeds", "pairs", "gold", "rank_by", "demos", "shots",
    "restart", "no_progress", "help", "json", "guide_term", "trace", "answers")
"""The options of the commands that take every knob as a flag (``generate``, ``distill
data``), by their names in the command and by their flags where these differ (``--json``,
``--guide-term``): a knob of the same name would take the option's place there
(``tests/test_plugin_clashes.py`` checks this list against the commands)."""

KNOB_NAMES_TAKEN = {
    **{f.name: f"the sampling field {f.name!r}" for f in sampling_fields()},
    **{f.openai: f"the sampling field {f.name!r} (OpenAI's {f.openai})"
       for f in sampling_fields() if f.openai != f.name},
    **{k: f"the request field {k!r}" for k in ("method", "knobs", "sampling", "base", "guide",
                                               "chat", "return_all", "weights", "trace")},
    **{k: f"the eval config's method field {k!r}" for k in ("label", "model", "budgets")},
    **{k: f"the command line's option --{k.replace('_', '-')}" for k in COMMAND_OPTIONS},
}
"""Names a knob cannot have: they sit beside the knobs in a request (``w2s.request``'s
``REQUEST_KEYS``, the server's ``w2s`` field), an eval config's method entry, or the sampling
settings every face takes by name."""


@functools.cache
def _knob_types(params: type | None) -> dict[str, Any]:
    """A knob dataclass's field types, as :attr:`Knob.type` (without reading its docs)."""
    if params is None:
        return {}
    hints = typing.get_type_hints(params)
    return {f.name: hints.get(f.name, str) for f in dataclasses.fields(params)}


def knob_clash(spec: DecoderSpec) -> str | None:
    """What a decoder's knobs clash with: a name in :data:`KNOB_NAMES_TAKEN`, or another
    decoder's knob of the same name and another type (the CLI has one flag per knob name);
    knobs that cannot be listed (every face lists them, with their docs) are refused too (w2s's
    own are listed by its tests; reading their docs here would slow every command's start)."""
    if not getattr(spec.params, "__module__", "w2s.").startswith("w2s."):
        try:
            spec.knobs()
        except Exception as e:  # noqa: BLE001 - e.g. a knob dataclass without source to read
            return f"its knobs cannot be listed ({type(e).__name__}: {e})"
    for name, typ in _knob_types(spec.params).items():
        if name in KNOB_NAMES_TAKEN:
            return f"knob {name!r} clashes with {KNOB_NAMES_TAKEN[name]}"
        for other in DECODERS.values():
            theirs = _knob_types(other.params) if other.name != spec.name else {}
            if theirs.get(name, typ) is not typ:
                return (f"knob {name!r} ({getattr(typ, '__name__', typ)}) clashes with knob "
                        f"{name!r} of {other.name} "
                        f"({getattr(theirs[name], '__name__', theirs[name])})")
    return None


DECODERS: Registry[DecoderSpec] = Registry("decoder", check=knob_clash)

DEFAULT_METHOD = {True: "cbs", False: "sample"}
"""The method a request that names none gets, by whether a guide is given: weak-to-strong
search with one, plain sampling without (the CLI, the server and the Python API agree)."""


def default_method(guided: bool) -> str:
    return DEFAULT_METHOD[bool(guided)]


def register(spec: DecoderSpec) -> DecoderSpec:
    """Add a decoder; its name must be new (or the very same spec again)."""
    return DECODERS.add(spec.name, spec)


def unregister(name: str) -> None:
    """Remove a decoder (tests and plugins that register temporary ones)."""
    DECODERS.remove(name)


def decoders() -> dict[str, DecoderSpec]:
    """Every registered decoder, those of installed plugins included (loaded on first use):
    what every face lists and accepts."""
    return DECODERS.all()


def get_decoder(name: str) -> DecoderSpec:
    if name not in decoders():
        raise W2SError(f"unknown method {name!r}; choose one of {', '.join(DECODERS)}")
    return DECODERS[name]

"""A request -> what to run: the one request parser (:mod:`w2s.request`) applied to OpenAI's
fields and the ``w2s`` field, then the server's limits; every refusal names its field."""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from w2s.decoding.registry import DecoderSpec
from w2s.errors import FieldError, W2SError
from w2s.guides import Guide
from w2s.params import SamplingParams, sampling_fields
from w2s.request import parse_request, to_sampling_params
from w2s.result import Result
from w2s.serve.errors import ApiError
from w2s.serve.server import Server


@dataclass
class Plan:
    """A validated request: what to run for each choice."""

    spec: DecoderSpec
    params: Any
    prompts: list[str]
    samplings: list[SamplingParams]  # one per choice (seed + i)
    rows: int
    guide: Guide | None
    weights: tuple[float, ...] | None  # this request's, or None for the server's
    trace: bool = False  # record each choice's search trace (w2s.decoding.trace)


def _refused(e: W2SError, default_param: str | None) -> ApiError:
    """A request error as a 400 whose ``param`` is the field's path."""
    if isinstance(e, FieldError):
        return ApiError(400, str(e), param=e.field)
    return ApiError(400, str(e), param=default_param)


def _best_of(best_of: int | None, w2s: dict[str, Any], n: int) -> dict[str, Any]:
    """OpenAI's ``best_of`` as w2s's Best-of-N: ``bon`` with ``n = best_of``, ranked by the
    guide (``best_of`` 1 or absent asks for nothing)."""
    if best_of is None or best_of == 1:
        return w2s
    if w2s.get("method", "bon") != "bon" or w2s.get("n", best_of) != best_of:
        raise ApiError(400, f"best_of {best_of} asks for Best-of-N (w2s.method 'bon', n "
                       f"{best_of}); it disagrees with the w2s field -- give one of them",
                       param="best_of")
    if best_of < n:
        raise ApiError(400, f"best_of ({best_of}) must be at least n ({n})", param="best_of")
    return {**w2s, "method": "bon", "n": best_of}


def plan(server: Server, req: Any, prompts: list[str], max_tokens: int | None) -> Plan:
    lim, d = server.limits, server.defaults
    if req.model is not None and req.model != server.model_id:
        raise ApiError(404, f"model {req.model!r} is not served here; this server serves "
                       f"{server.model_id!r}", param="model", kind="not_found_error",
                       code="model_not_found")
    max_new = max_tokens if max_tokens is not None else d.max_tokens
    given = {f.openai: getattr(req, f.openai) for f in sampling_fields()}  # every one
    given.update(max_tokens=max_new, stop=list(req.stops()) or None)
    w2s = req.w2s.model_dump(exclude_none=True) if req.w2s is not None else {}
    w2s = _best_of(getattr(req, "best_of", None), w2s, req.n)
    weights = w2s.pop("weights", None)
    try:  # the one request parser: OpenAI's sampling fields, then the w2s field
        sampling = to_sampling_params(given, d.sampling)
    except W2SError as e:
        raise _refused(e, None) from None
    try:
        request = parse_request(w2s, where="w2s.", default_method=d.method,
                                default_knobs=d.knobs, default_sampling=sampling,
                                guide_given=False)
    except W2SError as e:
        raise _refused(e, "w2s") from None
    method, spec, params = request.method, request.spec, request.knobs
    if method in server.why_not:
        raise ApiError(400, f"method {method!r} is not available on this server: "
                       f"{server.why_not[method]}", param="w2s.method")
    guide = server.guide if weights is None else reweighted(server.guide, weights)
    if max_new > lim.max_tokens:
        raise ApiError(400, f"max_tokens {max_new} is over this server's limit of "
                       f"{lim.max_tokens} (--max-tokens-limit)", param="max_tokens")
    if req.n > lim.max_n:
        raise ApiError(400, f"n {req.n} is over this server's limit of {lim.max_n} (--max-n)",
                       param="n")
    field = "messages" if hasattr(req, "messages") else "prompt"  # what a chat request sent
    if not prompts or len(prompts) > lim.max_prompts:
        raise ApiError(400, f"give 1 to {lim.max_prompts} prompts, got {len(prompts)}",
                       param="prompt")
    if len(prompts) * req.n > lim.max_queue:  # it could never be queued: 429 would lie
        raise ApiError(400, f"{len(prompts)} prompt(s) x n {req.n} = {len(prompts) * req.n} "
                       f"choices, more than this server's queue holds ({lim.max_queue}, "
                       "--max-queue); send fewer per request", param="n")
    rows = spec.rows_per_prompt(params) if params is not None else 1
    if rows > lim.max_rows:
        raise ApiError(400, f"{method} with these knobs needs {rows} candidate rows per "
                       f"prompt; this server runs at most {lim.max_rows} (--max-rows)",
                       param="w2s")
    base = request.sampling
    _check_engine(server, base)
    try:
        server.backend.check_prompts(list(dict.fromkeys(prompts)), max_new)
        if guide is not None:
            guide.check_prompts(list(dict.fromkeys(prompts)), max_new)
    except W2SError as e:
        raise ApiError(400, str(e), param=field) from None
    # without a seed every choice is fresh: the batcher keeps one prompt per call (see Job)
    samplings = [base if base.seed is None else replace(base, seed=_wrap(base.seed + i))
                 for i in range(req.n)]
    return Plan(spec, params, prompts, samplings, rows, guide,
                tuple(weights) if weights is not None else None, request.trace)


def _check_engine(server: Server, sampling: SamplingParams) -> None:
    """A sampling field an engine base cannot be sent is a 400 naming it, never dropped."""
    from w2s.models.openai_api import OpenAIBackend, engine_sampling

    if isinstance(server.backend, OpenAIBackend):
        try:
            engine_sampling(sampling)
        except W2SError as e:
            raise _refused(e, None) from None


def reweighted(guide: Guide | None, weights: list[float]) -> Guide:
    """The server's guide with this request's weights on its terms (no model is loaded)."""
    terms = guide.parts() if guide is not None else []
    if guide is None or len(weights) != len(terms) or not all(math.isfinite(w)
                                                              for w in weights):
        raise ApiError(400, f"w2s.weights: this server's guide has {len(terms)} term(s); give "
                       f"as many finite weights, got {len(weights)}", param="w2s.weights")
    return guide.reweighted(weights)


def _wrap(seed: int) -> int:
    """``seed + i`` kept in the signed 64-bit range the schema admits."""
    return (seed + 2**63) % 2**64 - 2**63


def runner(server: Server, p: Plan, sampling: SamplingParams) -> Callable[[list[str]], list]:
    def run(prompts: list[str]) -> list[Result]:
        return p.spec.run(server.backend, p.guide, prompts, p.params, sampling)
    return run


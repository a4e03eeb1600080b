"""The FastAPI app of ``w2s serve``: OpenAI's completions and chat routes over the decoder
registry, with the playground page and the eval-run browser beside them.

One :class:`Server` holds the loaded base and guide, the limits and the defaults; every request
is validated into (method spec, knobs, sampling settings, prompts) before anything is queued, and
every refusal is OpenAI's error body with a 4xx code (a 5xx is a bug, and says so in one line).
"""

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from w2s.chat import ChatPrompt
from w2s.decoding.registry import DecoderSpec, decoders
from w2s.errors import FieldError, W2SError
from w2s.guides import Guide
from w2s.models.base import Backend, LogitsBackend
from w2s.params import SamplingParams
from w2s.request import parse_request, parse_sampling
from w2s.result import Result
from w2s.serve import schema as S
from w2s.serve.batcher import Batcher, Job, Overloaded
from w2s.serve.stream import Committed

log = logging.getLogger("w2s.serve")
STATIC = Path(__file__).resolve().parent / "static"


class ApiError(Exception):
    """A refusal: an HTTP status and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.headers = headers or {}


def error_response(status: int, message: str, kind: str = "invalid_request_error",
                   param: str | None = None, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    body = S.ErrorBody(error=S.ErrorDetail(message=message, type=kind, param=param,
                                           code=str(status)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


@dataclass
class Limits:
    max_tokens: int = 256
    max_n: int = 8
    max_prompts: int = 64
    max_rows: int = 64
    max_queue: int = 256
    max_body_bytes: int = 1 << 20
    gather_ms: float = 10.0


@dataclass
class Defaults:
    method: str = "cbs"
    max_tokens: int = 32
    sampling: SamplingParams = field(default_factory=SamplingParams)
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per method: knob values that replace the knob dataclass's defaults."""


@dataclass
class Server:
    backend: Backend
    guide: Guide | None
    model_id: str = "w2s"
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    defaults: Defaults = field(default_factory=Defaults)
    runs_dir: Path | None = None
    why_not: dict[str, str] = field(default_factory=dict)
    """Methods this server cannot run, and why (filled by :meth:`probe`)."""

    def probe(self) -> None:
        """Run every registered method once on a one-token answer: what fails is marked
        unavailable with its one-line reason (a missing guide, a text-only base, EFT across
        vocabularies), so the playground and the errors say so up front."""
        for name, spec in decoders().items():
            try:
                self._check_guide(spec)
                spec.run(self.backend, self.guide, ["Hello"], spec.make_params({}),
                         SamplingParams(max_new_tokens=1))
            except W2SError as e:
                self.why_not[name] = str(e)
        if self.defaults.method not in decoders() or self.defaults.method in self.why_not:
            raise W2SError(f"the default method {self.defaults.method!r} cannot run here: "
                           f"{self.why_not.get(self.defaults.method, 'not registered')}")

    def _check_guide(self, spec: DecoderSpec) -> None:
        try:
            spec.check_guide(self.guide, pair_name="--tuned and --untuned (or --arm)",
                             rm_name="--reward-model")
        except W2SError as e:
            raise W2SError(f"{e} (this server was started without it)") from None

    def method_list(self) -> S.MethodList:
        methods = []
        for name, spec in decoders().items():
            base = spec.make_params(self.defaults.knobs.get(name, {}))
            knobs = [S.Knob(name=k.name, type=k.kind, default=getattr(base, k.name),
                            doc=k.doc) for k in spec.knobs()]
            methods.append(S.MethodInfo(name=name, summary=spec.summary, guide=spec.guide,
                                        ranked=spec.ranked, kl=spec.kl,
                                        available=name not in self.why_not,
                                        why=self.why_not.get(name), knobs=knobs))
        d, lim = self.defaults, self.limits
        return S.MethodList(
            model=self.model_id, methods=methods,
            defaults={"method": d.method, "max_tokens": d.max_tokens,
                      "temperature": d.sampling.temperature, "top_p": d.sampling.top_p,
                      "top_k": d.sampling.top_k, "seed": d.sampling.seed},
            limits={"max_tokens": lim.max_tokens, "n": lim.max_n, "max_rows": lim.max_rows,
                    "max_prompts": lim.max_prompts, "max_queue": lim.max_queue})


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


OPENAI_NAMES = {"max_new_tokens": "max_tokens"}
"""SamplingParams fields that OpenAI's API names otherwise."""


def _refused(e: W2SError, default_param: str, names: dict[str, str] | None = None) -> ApiError:
    """A request error as a 400 whose ``param`` is the field's path."""
    if isinstance(e, FieldError):
        field = (names or {}).get(e.field, e.field)
        message = str(e) if field == e.field else f"{field}{e.sep}{e.problem}"
        return ApiError(400, message, param=field)
    return ApiError(400, str(e), param=default_param)


def plan(server: Server, req: Any, prompts: list[str], max_tokens: int | None) -> Plan:
    lim, d = server.limits, server.defaults
    if req.model is not None and req.model != server.model_id:
        raise ApiError(404, f"model {req.model!r} is not served here; this server serves "
                       f"{server.model_id!r}", param="model", kind="not_found_error")
    max_new = max_tokens if max_tokens is not None else d.max_tokens
    given = {"max_new_tokens": max_new, "temperature": req.temperature, "top_p": req.top_p,
             "top_k": req.top_k, "seed": req.seed, "ignore_eos": req.ignore_eos,
             "stop": req.stops() or None}
    w2s = req.w2s.model_dump(exclude_none=True) if req.w2s is not None else {}
    weights = w2s.pop("weights", None)
    try:  # the one request parser: OpenAI's sampling fields, then the w2s field
        sampling = parse_sampling({k: v for k, v in given.items() if v is not None}, d.sampling,
                                  where="")
    except W2SError as e:
        raise _refused(e, "w2s", OPENAI_NAMES) from None
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
    if not prompts or len(prompts) > lim.max_prompts:
        raise ApiError(400, f"give 1 to {lim.max_prompts} prompts, got {len(prompts)}",
                       param="prompt")
    rows = spec.rows_per_prompt(params) if params is not None else 1
    if rows > lim.max_rows:
        raise ApiError(400, f"{method} with these knobs needs {rows} candidate rows per "
                       f"prompt; this server runs at most {lim.max_rows} (--max-rows)",
                       param="w2s")
    base = request.sampling
    try:
        server.backend.check_prompts(list(dict.fromkeys(prompts)), max_new)
        if guide is not None:
            guide.check_prompts(list(dict.fromkeys(prompts)), max_new)
    except W2SError as e:
        raise ApiError(400, str(e), param="prompt") from None
    samplings = [replace(base, seed=_wrap(base.seed + i)) for i in range(req.n)]
    return Plan(spec, params, prompts, samplings, rows, guide,
                tuple(weights) if weights is not None else None)


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


def _runner(server: Server, p: Plan, sampling: SamplingParams) -> Callable[[list[str]], list]:
    def run(prompts: list[str]) -> list[Result]:
        return p.spec.run(server.backend, p.guide, prompts, p.params, sampling)
    return run


def _prompt_tokens(backend: Backend, prompt: str) -> int:
    if isinstance(backend, LogitsBackend):
        return len(backend.encode_prompt(prompt))
    tok = getattr(backend, "tokenizer", None)
    fmt = getattr(backend, "format_prompt", None)
    if tok is not None and fmt is not None:
        return len(tok(fmt(prompt), add_special_tokens=False)["input_ids"])
    return 0  # a text-only engine without a tokenizer: the prompt's size is unknown here


def _info(p: Plan, results: list[Result]) -> S.W2SInfo:
    choices = [S.ChoiceInfo(index=i, score=r.score, finished=r.finished,
                            stats={k: float(v) for k, v in r.stats.items()},
                            cost=S.CostInfo(base_tokens=r.cost.base_tokens,
                                            guide_tokens=r.cost.guide_tokens,
                                            wall_time_s=round(r.cost.wall_time_s, 4)))
               for i, r in enumerate(results)]
    total = S.CostInfo(base_tokens=sum(c.cost.base_tokens for c in choices),
                       guide_tokens=sum(c.cost.guide_tokens for c in choices),
                       wall_time_s=max((c.cost.wall_time_s for c in choices), default=0.0))
    params = dataclasses.asdict(p.params) if p.params is not None else {}
    return S.W2SInfo(method=p.spec.name, params=params,
                     score=results[0].score if results else None, cost=total, choices=choices)


def _usage(server: Server, p: Plan, results: list[Result]) -> S.Usage:
    prompt = sum(_prompt_tokens(server.backend, x) for x in p.prompts)
    done = sum(len(r.token_ids) for r in results)
    return S.Usage(prompt_tokens=prompt, completion_tokens=done, total_tokens=prompt + done)


def create_app(server: Server) -> FastAPI:
    """The app; the batcher starts with it (``lifespan``)."""
    batcher = Batcher(max_rows=server.limits.max_rows, max_queue=server.limits.max_queue,
                      gather_s=server.limits.gather_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="w2s serve", version=_version(), lifespan=lifespan,
                  description="Weak-to-strong search behind an OpenAI-compatible API. The "
                  "method and its knobs travel in the extra field `w2s`.")
    app.state.server, app.state.batcher = server, batcher
    CompletionRequest, ChatRequest = S.request_models(decoders())  # noqa: N806
    bearer = HTTPBearer(auto_error=False, description="--api-key (when the server has one)")

    def auth(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if server.api_key is None:
            return
        if cred is None:
            raise ApiError(401, "this server needs an API key: send Authorization: Bearer KEY",
                           kind="authentication_error")
        if not secrets.compare_digest(cred.credentials.encode(), server.api_key.encode()):
            raise ApiError(401, "wrong API key", kind="authentication_error")

    errors = {code: {"model": S.ErrorBody, "description": what} for code, what in (
        (400, "The request is invalid (the message says why)"), (401, "Missing or wrong API key"),
        (404, "No such model, run or file"), (413, "The body is too large"),
        (429, "The queue is full: retry after Retry-After seconds"))}
    sse = {"text/event-stream": {"schema": {"type": "string"}}}

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.message, e.kind, e.param, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        where = field_path(first.get("loc", ()))
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            msg = "unknown field (not part of this API)"
        elif first.get("type") in ("union_tag_not_found", "union_tag_invalid"):
            where = where or "w2s"
            where, msg = f"{where}.method", ("missing or unknown; choose one of "
                                             f"{', '.join(decoders())}")
        return error_response(400, f"{where}: {msg}" if where else msg, param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        detail = str(e.detail)
        if e.status_code in (404, 405) and detail in ("Not Found", "Method Not Allowed"):
            detail = (f"no route {request.method} {request.url.path}; the API is listed at "
                      "/docs")
        return error_response(e.status_code, detail, kind, headers=e.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return error_response(500, f"internal error: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}", "server_error")

    app.add_middleware(BodyLimit, limit=server.limits.max_body_bytes)

    @app.get("/health", response_model=S.Health, tags=["server"])
    async def health() -> S.Health:
        return S.Health(status="ok")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> Any:
        page = STATIC / "index.html"
        if not page.is_file():
            return HTMLResponse("<p>the playground page is not installed</p>", status_code=404)
        return FileResponse(page, media_type="text/html")

    @app.get("/v1/models", response_model=S.ModelList, responses=errors, tags=["openai"],
             dependencies=[Depends(auth)])
    async def models() -> S.ModelList:
        return S.ModelList(data=[S.ModelCard(id=server.model_id, created=STARTED,
                                             owned_by="w2s")])

    @app.get("/w2s/methods", response_model=S.MethodList, responses=errors, tags=["w2s"],
             dependencies=[Depends(auth)])
    async def methods() -> S.MethodList:
        return server.method_list()

    @app.get("/w2s/status", response_model=S.Status, responses=errors, tags=["w2s"],
             dependencies=[Depends(auth)])
    async def status() -> S.Status:
        return S.Status(**batcher.status())

    @app.get("/w2s/runs", response_model=S.RunList, responses=errors, tags=["w2s"],
             dependencies=[Depends(auth)])
    async def runs() -> S.RunList:
        return S.RunList(runs=_runs(server.runs_dir))

    @app.get("/w2s/runs/{run:path}/{name}", responses={**errors, 200: {"content": {
        "image/png": {}, "text/markdown": {}}}}, tags=["w2s"], dependencies=[Depends(auth)],
        response_class=FileResponse)
    async def run_file(run: str, name: str) -> Any:
        path = _run_file(server.runs_dir, run, name)
        return FileResponse(path, media_type="image/png" if name.endswith(".png")
                            else "text/markdown")

    async def answer(request: Request, req: Any, prompts: list[str], max_tokens: int | None,
                     chat: bool) -> Any:
        p = plan(server, req, prompts, max_tokens)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue | None = asyncio.Queue() if req.stream else None
        jobs = [Job(prompt, (p.spec.name, p.params, s, p.weights), p.rows, _runner(server, p, s), loop,
                    events=events) for prompt in p.prompts for s in p.samplings]
        try:
            batcher.submit(jobs)
        except Overloaded as e:
            raise ApiError(429, str(e), kind="rate_limit_error",
                           headers={"Retry-After": "1"}) from None
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_stream(server, batcher, p, jobs, rid, chat, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        results = await _wait(request, batcher, jobs)
        return _response(server, p, results, rid, chat)

    @app.post("/v1/completions", response_model=S.CompletionResponse, tags=["openai"],
              responses={**errors, 200: {"content": sse}}, dependencies=[Depends(auth)])
    async def completions(request: Request, req: CompletionRequest) -> Any:  # type: ignore[valid-type]  # noqa: E501
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        return await answer(request, req, prompts, req.max_tokens, chat=False)

    @app.post("/v1/chat/completions", response_model=S.ChatCompletionResponse, tags=["openai"],
              responses={**errors, 200: {"content": sse}}, dependencies=[Depends(auth)])
    async def chat_completions(request: Request, req: ChatRequest) -> Any:  # type: ignore[valid-type]
        if (req.max_tokens is not None and req.max_completion_tokens is not None
                and req.max_tokens != req.max_completion_tokens):
            raise ApiError(400, "max_tokens and max_completion_tokens disagree; give one",
                           param="max_completion_tokens")
        try:
            prompt = ChatPrompt([{"role": m.role, "content": m.content} for m in req.messages])
        except W2SError as e:
            raise ApiError(400, str(e), param="messages") from None
        max_tokens = req.max_completion_tokens or req.max_tokens
        return await answer(request, req, [prompt], max_tokens, chat=True)

    return app


STARTED = int(time.time())


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}


def field_path(loc: Any) -> str:
    """A pydantic error location as the request's field path: ``("body", "w2s", "cbs", "w")``
    is ``w2s.w`` (the body, union members and the method tag are not fields), list indices in
    brackets (``messages[0].content``)."""
    parts: list[str] = []
    for x in loc:
        if isinstance(x, int):
            if parts:
                parts[-1] += f"[{x}]"
            continue
        s = str(x)
        if s == "body" and not parts:
            continue
        if not s.isidentifier() or s.lower() in _TYPE_TAGS:  # a union member: str, list[str]
            continue
        if parts and parts[-1] == "w2s" and s in decoders():  # the method's tag
            continue
        parts.append(s)
    return ".".join(parts)


class BodyLimit:
    """Refuse a body over ``limit`` bytes with 413, whether or not it says its length (a
    chunked upload is counted as it arrives), before any route parses it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_big = error_response(413, f"the body is over {self.limit} bytes (--max-body-bytes)")
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > self.limit):
            return await too_big(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the client's disconnect, when it comes

        return await self.app(scope, replay, send)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("w2s")
    except PackageNotFoundError:  # pragma: no cover
        return "0"


async def _wait(request: Request, batcher: Batcher, jobs: list[Job]) -> list[Result]:
    """The jobs' results; if the client goes away first, its jobs are cancelled."""
    gathered = asyncio.ensure_future(asyncio.gather(*(j.done for j in jobs)))
    try:
        while True:
            done, _ = await asyncio.wait({gathered}, timeout=0.25)
            if done:
                break
            if await request.is_disconnected():
                batcher.cancel(jobs)
                gathered.cancel()
                raise ApiError(400, "the client went away")
        return list(gathered.result())
    except W2SError as e:  # a user error found while decoding (e.g. by a guide's model)
        batcher.cancel(jobs)
        raise ApiError(400, str(e)) from None
    except asyncio.CancelledError:
        batcher.cancel(jobs)
        raise


def _response(server: Server, p: Plan, results: list[Result], rid: str, chat: bool) -> Any:
    usage, info = _usage(server, p, results), _info(p, results)
    reason = ["stop" if r.finished else "length" for r in results]
    if chat:
        return S.ChatCompletionResponse(
            id=rid, created=int(time.time()), model=server.model_id, usage=usage, w2s=info,
            choices=[S.ChatChoice(index=i, message=S.AssistantMessage(content=r.text),
                                  finish_reason=f) for i, (r, f) in enumerate(zip(results,
                                                                                   reason))])
    return S.CompletionResponse(
        id=rid, created=int(time.time()), model=server.model_id, usage=usage, w2s=info,
        choices=[S.CompletionChoice(index=i, text=r.text, finish_reason=f)
                 for i, (r, f) in enumerate(zip(results, reason))])


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _stream(server: Server, batcher: Batcher, p: Plan, jobs: list[Job], rid: str,
                  chat: bool, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: each choice's committed text as it grows, its rest at the end, a
    last chunk with the ``w2s`` field (and ``usage``), then ``[DONE]``."""
    created, kind = int(time.time()), "chat.completion.chunk" if chat else "text_completion"
    index = {id(j): i for i, j in enumerate(jobs)}
    sent = [Committed(s.stop) for _ in p.prompts for s in p.samplings]
    started = [False] * len(jobs)

    def chunk(i: int, text: str, finish: str | None) -> str:
        if chat:
            delta: dict[str, Any] = {"content": text} if text or finish is None else {}
            if not started[i]:
                delta = {"role": "assistant", **delta}
                started[i] = True
            choice = {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": i, "text": text, "finish_reason": finish, "logprobs": None}
        return _sse({"id": rid, "object": kind, "created": created, "model": server.model_id,
                     "choices": [choice]})

    queue = jobs[0].events
    assert queue is not None
    results: list[Result | None] = [None] * len(jobs)
    try:
        remaining = len(jobs)
        while remaining:
            job, text = await queue.get()
            i = index[id(job)]
            if text is not None:
                delta = sent[i].delta(text)
                if delta:
                    yield chunk(i, delta, None)
                continue
            remaining -= 1
            exc = job.done.exception()
            if exc is not None:
                message = str(exc) if isinstance(exc, W2SError) else "internal error"
                yield _sse({"error": S.ErrorDetail(message=message, type="server_error"
                                                   if not isinstance(exc, W2SError)
                                                   else "invalid_request_error").model_dump()})
                batcher.cancel(jobs)
                return
            r = job.done.result()
            results[i] = r
            rest = sent[i].final(r.text)
            if not sent[i].ok:
                log.warning("stream of %s: the answer does not extend the streamed text", rid)
            yield chunk(i, rest, "stop" if r.finished else "length")
        done = [r for r in results if r is not None]
        last: dict[str, Any] = {"id": rid, "object": kind, "created": created,
                                "model": server.model_id, "choices": [],
                                "w2s": _info(p, done).model_dump()}
        if include_usage:
            last["usage"] = _usage(server, p, done).model_dump()
        yield _sse(last)
        yield "data: [DONE]\n\n"
    finally:
        if any(r is None for r in results):
            batcher.cancel(jobs)  # the client went away (or an error ended the stream)


def _runs(runs_dir: Path | None) -> list[S.RunInfo]:
    if runs_dir is None or not runs_dir.is_dir():
        return []
    out = []
    for summary in sorted(runs_dir.rglob("summary.md")):
        folder = summary.parent
        name = folder.relative_to(runs_dir).as_posix()
        if name == ".":
            name = folder.name
        plots = [f"/w2s/runs/{name}/{p.name}" for p in sorted(folder.glob("*.png"))]
        out.append(S.RunInfo(name=name, summary_md=summary.read_text(encoding="utf-8")[:200_000],
                             plots=plots))
    return out


def _run_file(runs_dir: Path | None, run: str, name: str) -> Path:
    if runs_dir is None:
        raise ApiError(404, "this server shows no eval runs (--runs)", kind="not_found_error")
    known = {r.name: r for r in _runs(runs_dir)}
    if run not in known or not (name == "summary.md" or name.endswith(".png")):
        raise ApiError(404, f"no run file {run}/{name}", kind="not_found_error")
    path = (runs_dir / run / name) if (runs_dir / run).is_dir() else runs_dir / name
    if not path.is_file():
        raise ApiError(404, f"no run file {run}/{name}", kind="not_found_error")
    return path

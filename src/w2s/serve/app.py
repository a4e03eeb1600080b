"""The FastAPI app of ``w2s serve``: OpenAI's completions and chat routes over the decoder
registry, with the playground page and the eval-run browser beside them.

The app is split by idea: :mod:`~w2s.serve.server` holds the loaded models, limits and defaults;
:mod:`~w2s.serve.plan` turns a request into what to run (the one request parser of
:mod:`w2s.request`); :mod:`~w2s.serve.wire` writes responses and server-sent events;
:mod:`~w2s.serve.errors` turns every refusal into OpenAI's error body; :mod:`~w2s.serve.runs`
serves finished eval runs. This module wires routes to them.
"""

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from w2s.chat import ChatPrompt
from w2s.decoding.registry import decoders
from w2s.errors import W2SError
from w2s.serve import schema as S
from w2s.serve.batcher import Batcher, Job, Overloaded
from w2s.serve.errors import ApiError, error_response, field_path, install_error_handlers
from w2s.serve.plan import plan, reweighted, runner
from w2s.serve.runs import list_runs, run_file
from w2s.serve.server import Defaults, Limits, Server
from w2s.serve.wire import STARTED, response, stream, wait

STATIC = Path(__file__).resolve().parent / "static"
ERRORS = {code: {"model": S.ErrorBody, "description": what} for code, what in (
    (400, "The request is invalid (the message says why)"), (401, "Missing or wrong API key"),
    (404, "No such model, run or file"), (413, "The body is too large"),
    (429, "The queue is full: retry after Retry-After seconds"))}
SSE = {"text/event-stream": {"schema": {
    "type": "object", "required": ["data"],
    "properties": {"data": {"type": "string", "description": "a chunk as JSON, or [DONE]"},
                   "event": {"type": "string"}, "id": {"type": "string"},
                   "retry": {"type": "integer"}}}}}
"""One server-sent event (OpenAPI 3.1 describes a stream by its event, as 3.2's itemSchema
does): its ``data`` holds a chunk's JSON, then ``[DONE]``."""

__all__ = ["ApiError", "Defaults", "Limits", "Server", "create_app", "error_response",
           "field_path", "plan", "reweighted"]


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
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=server.limits.max_body_bytes)
    auth = _auth(server)
    _server_routes(app, server, batcher, auth)
    _completion_routes(app, server, batcher, auth)
    return app


def _auth(server: Server) -> Callable[..., None]:
    """The dependency that checks ``Authorization: Bearer KEY`` (constant-time, whole key)."""
    bearer = HTTPBearer(auto_error=False, description="--api-key (when the server has one)")

    def auth(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if server.api_key is None:
            return
        if cred is None:
            raise ApiError(401, "this server needs an API key: send Authorization: Bearer KEY",
                           kind="authentication_error")
        if not secrets.compare_digest(cred.credentials.encode(), server.api_key.encode()):
            raise ApiError(401, "wrong API key", kind="authentication_error")
    return auth


def _server_routes(app: FastAPI, server: Server, batcher: Batcher, auth: Callable) -> None:
    """Health, the playground page, the model list, the methods the playground reads, the
    queue's status and the eval-run browser."""
    keyed = [Depends(auth)]

    @app.get("/health", response_model=S.Health, tags=["server"])
    async def health() -> S.Health:
        return S.Health(status="ok")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> Any:
        page = STATIC / "index.html"
        if not page.is_file():
            return HTMLResponse("<p>the playground page is not installed</p>", status_code=404)
        return FileResponse(page, media_type="text/html")

    @app.get("/v1/models", response_model=S.ModelList, responses=ERRORS, tags=["openai"],
             dependencies=keyed)
    async def models() -> S.ModelList:
        return S.ModelList(data=[S.ModelCard(id=server.model_id, created=STARTED,
                                             owned_by="w2s")])

    @app.get("/w2s/methods", response_model=S.MethodList, responses=ERRORS, tags=["w2s"],
             dependencies=keyed)
    async def methods() -> S.MethodList:
        return server.method_list()

    @app.get("/w2s/status", response_model=S.Status, responses=ERRORS, tags=["w2s"],
             dependencies=keyed)
    async def status() -> S.Status:
        return S.Status(**batcher.status())

    @app.get("/w2s/runs", response_model=S.RunList, responses=ERRORS, tags=["w2s"],
             dependencies=keyed)
    async def runs() -> S.RunList:
        return S.RunList(runs=list_runs(server.runs_dir))

    @app.get("/w2s/runs/{run:path}/{name}", responses={**ERRORS, 200: {"content": {
        "image/png": {}, "text/markdown": {}}}}, tags=["w2s"], dependencies=keyed,
        response_class=FileResponse)
    async def one_run_file(run: str, name: str) -> Any:
        path = run_file(server.runs_dir, run, name)
        return FileResponse(path, media_type="image/png" if name.endswith(".png")
                            else "text/markdown")


def _completion_routes(app: FastAPI, server: Server, batcher: Batcher, auth: Callable) -> None:
    """POST /v1/completions and /v1/chat/completions, plain or streamed."""
    CompletionRequest, ChatRequest = S.request_models(decoders())  # noqa: N806

    async def answer(request: Request, req: Any, prompts: list[str], max_tokens: int | None,
                     chat: bool) -> Any:
        p = plan(server, req, prompts, max_tokens)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue | None = asyncio.Queue() if req.stream else None
        # the key is everything that decides an answer but the prompt: the request's guide
        # weights too (a batch runs one guide)
        jobs = [Job(prompt, (p.spec.name, p.params, s, p.weights, p.trace), p.rows,
                    runner(server, p, s), loop, events=events, fresh=s.seed is None,
                    traced=p.trace)
                for prompt in p.prompts for s in p.samplings]
        try:
            batcher.submit(jobs)
        except Overloaded as e:
            raise ApiError(429, str(e), kind="rate_limit_error",
                           headers={"Retry-After": "1"}) from None
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(stream(server, batcher, p, jobs, rid, chat, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        results = await wait(request, batcher, jobs)
        return response(server, p, results, rid, chat, [j.trace for j in jobs])

    @app.post("/v1/completions", response_model=S.CompletionResponse, tags=["openai"],
              responses={**ERRORS, 200: {"content": SSE}}, dependencies=[Depends(auth)])
    async def completions(request: Request, req: CompletionRequest) -> Any:  # type: ignore[valid-type]  # noqa: E501
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        return await answer(request, req, prompts, req.max_tokens, chat=False)

    @app.post("/v1/chat/completions", response_model=S.ChatCompletionResponse, tags=["openai"],
              responses={**ERRORS, 200: {"content": SSE}}, dependencies=[Depends(auth)])
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

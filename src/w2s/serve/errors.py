"""Refusals of ``w2s serve``: OpenAI's error body with a 4xx code (a 5xx is a bug, and says so
in one line), and the handlers that turn every failure into one."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from w2s.decoding.registry import decoders
from w2s.serve import schema as S

log = logging.getLogger("w2s.serve")


CODES = {401: "invalid_api_key", 404: "not_found", 413: "request_too_large",
         429: "rate_limit_exceeded", 500: "internal_error"}
"""OpenAI-style ``code`` ids by status; a plain invalid request has none (null), as OpenAI's."""


class ApiError(Exception):
    """A refusal: an HTTP status and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, headers: dict[str, str] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.headers, self.code = headers or {}, code


def error_response(status: int, message: str, kind: str = "invalid_request_error",
                   param: str | None = None, headers: dict[str, str] | None = None,
                   code: str | None = None) -> JSONResponse:
    """OpenAI's error body: ``code`` a string id (by default the status's, see
    :data:`CODES`) or null, ``param`` the request field at fault or null."""
    body = S.ErrorBody(error=S.ErrorDetail(message=message, type=kind, param=param,
                                           code=code or CODES.get(status)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)




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



def install_error_handlers(app: FastAPI) -> None:
    """Every failure as OpenAI's error body: refusals, invalid bodies (naming the field's
    path), unknown routes, and bugs (a 500 in one line)."""
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.message, e.kind, e.param, e.headers, e.code)

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
        sep = " " if msg.startswith(("must ", "is ")) else ": "  # "<path> must be >= 0"
        return error_response(400, f"{where}{sep}{msg}" if where else msg, param=where or None)

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

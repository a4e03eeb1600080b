"""The wire: results as OpenAI's responses (with the ``w2s`` extension), and as server-sent
events while a decode runs."""

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from w2s.errors import W2SError
from w2s.models.base import Backend, PromptCounter
from w2s.result import Result
from w2s.serve import schema as S
from w2s.serve.batcher import Batcher, Job
from w2s.serve.errors import ApiError
from w2s.serve.plan import Plan
from w2s.serve.server import Server
from w2s.serve.stream import Committed

log = logging.getLogger("w2s.serve")
STARTED = int(time.time())


def prompt_tokens(backend: Backend, prompt: str) -> int:
    n = backend.prompt_tokens(prompt) if isinstance(backend, PromptCounter) else None
    return n or 0  # a text-only engine without a tokenizer: the prompt's size is unknown here


def info(p: Plan, results: list[Result], traces: list[dict[str, Any] | None] | None = None
         ) -> S.W2SInfo:
    choices = [S.ChoiceInfo(index=i, seed=r.params.get("seed"), score=r.score,
                            finished=r.finished,
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
                     score=results[0].score if results else None, cost=total, choices=choices,
                     traces=[t or {} for t in traces] if p.trace and traces is not None
                     else None)


def usage(server: Server, p: Plan, results: list[Result]) -> S.Usage:
    prompt = sum(prompt_tokens(server.backend, x) for x in p.prompts)
    done = sum(len(r.token_ids) for r in results)
    return S.Usage(prompt_tokens=prompt, completion_tokens=done, total_tokens=prompt + done)



async def wait(request: Request, batcher: Batcher, jobs: list[Job]) -> list[Result]:
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


def response(server: Server, p: Plan, results: list[Result], rid: str, chat: bool,
             traces: list[dict[str, Any] | None] | None = None) -> Any:
    used, w2s_info = usage(server, p, results), info(p, results, traces)
    reason = ["stop" if r.finished else "length" for r in results]
    if chat:
        return S.ChatCompletionResponse(
            id=rid, created=int(time.time()), model=server.model_id, usage=used, w2s=w2s_info,
            choices=[S.ChatChoice(index=i, message=S.AssistantMessage(content=r.text),
                                  finish_reason=f) for i, (r, f) in enumerate(zip(results,
                                                                                   reason))])
    return S.CompletionResponse(
        id=rid, created=int(time.time()), model=server.model_id, usage=used, w2s=w2s_info,
        choices=[S.CompletionChoice(index=i, text=r.text, finish_reason=f)
                 for i, (r, f) in enumerate(zip(results, reason))])


def sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def error_chunk(exc: BaseException) -> str:
    """The event that ends a stream whose decode failed (a user error says why)."""
    user = isinstance(exc, W2SError)
    return sse({"error": S.ErrorDetail(message=str(exc) if user else "internal error",
                                       type="invalid_request_error" if user
                                       else "server_error").model_dump()})


async def stream(server: Server, batcher: Batcher, p: Plan, jobs: list[Job], rid: str,
                  chat: bool, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: each choice's committed text as it grows, its rest at the end, a
    last chunk with the ``w2s`` field (and ``usage``), then ``[DONE]``."""
    created, kind = int(time.time()), "chat.completion.chunk" if chat else "text_completion"
    head = {"id": rid, "object": kind, "created": created, "model": server.model_id}
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
        return sse({**head, "choices": [choice]})

    queue = jobs[0].events
    assert queue is not None
    results: list[Result | None] = [None] * len(jobs)
    try:
        remaining = len(jobs)
        while remaining:
            job, text = await queue.get()
            i = index[id(job)]
            if isinstance(text, dict):  # a traced search's round: a chunk with no choices
                yield sse({**head, "choices": [], "w2s": {"trace": {"index": i, **text}}})
                continue
            if text is not None:
                delta = sent[i].delta(text)
                if delta:
                    yield chunk(i, delta, None)
                continue
            remaining -= 1
            exc = job.done.exception()
            if exc is not None:
                yield error_chunk(exc)
                batcher.cancel(jobs)
                return
            r = job.done.result()
            results[i] = r
            rest = sent[i].final(r.text)
            if not sent[i].ok:
                log.warning("stream of %s: the answer does not extend the streamed text", rid)
            yield chunk(i, rest, "stop" if r.finished else "length")
        done = [r for r in results if r is not None]
        last: dict[str, Any] = {**head, "choices": [], "w2s": info(
            p, done, [j.trace for j in jobs]).model_dump(exclude=None if p.trace
                                                          else {"traces"})}
        if include_usage:
            last["usage"] = usage(server, p, done).model_dump()
        yield sse(last)
        yield "data: [DONE]\n\n"
    finally:
        if any(r is None for r in results):
            batcher.cancel(jobs)  # the client went away (or an error ended the stream)



"""HTTP to one API root, apart from what is said over it: a pooled ``httpx`` client, at most
``max_concurrency`` requests in flight, retries of 429/5xx, timeouts and dropped connections
with full-jitter exponential backoff that honours ``Retry-After`` (``tenacity``), and one line
when the budget is spent. It knows nothing of OpenAI's fields: :mod:`w2s.models.openai_api`
maps requests and answers; an engine-served guide (:mod:`w2s.models.engine_lm`) shares it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Sequence
from typing import Any

from w2s.errors import W2SError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MISSING_STATUS = frozenset({404, 405, 501})
"""What a server answers for an endpoint it does not have."""


class _Retryable(Exception):
    """A failure worth another try; ``after``: the server's Retry-After, in seconds."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0][:300] if text else ""


class Transport:
    """POSTs to ``base_url`` (``stats`` counts ``requests`` and ``retries``)."""

    def __init__(self, base_url: str, *, api_key: str | None, max_concurrency: int,
                 timeout: float, max_retries: int, affinity_header: str | None,
                 stats: dict[str, int]) -> None:
        self.base_url, self.api_key = base_url, api_key
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self.affinity_header = affinity_header
        self.stats = stats

    def client(self) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.max_concurrency,
                              max_keepalive_connections=self.max_concurrency)
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(self.timeout))

    def post_all(self, path: str, bodies: Sequence[dict[str, Any] | None], *,
                    missing_ok: bool = False, keys: Sequence[str | None] | None = None
                    ) -> list[Any]:
        """POST every body to ``path`` (under the API root, or a whole URL) concurrently, with
        retries; answers in order, None where the body is None (or, with ``missing_ok``, where
        the server has no such endpoint). ``keys[i]``: body ``i``'s affinity key, sent in the
        ``affinity_header`` so a router sends equal keys to one replica."""
        if not any(b is not None for b in bodies):
            return [None] * len(bodies)
        keys = keys if keys is not None else [None] * len(bodies)

        async def all_() -> list[Any]:
            gate = asyncio.Semaphore(self.max_concurrency)
            async with self.client() as client:
                async def one(body: dict[str, Any] | None, key: str | None) -> Any:
                    if body is None:
                        return None
                    headers = ({self.affinity_header: key}
                               if key is not None and self.affinity_header else None)
                    async with gate:
                        return await self._post(client, path, body, missing_ok=missing_ok,
                                                headers=headers)

                return list(await asyncio.gather(*(one(b, k) for b, k in zip(bodies, keys))))

        return run_sync(all_())

    async def _post(self, client: Any, path: str, body: dict[str, Any], *,
                    missing_ok: bool = False, headers: dict[str, str] | None = None) -> Any:
        """POST with retries on 429/5xx, timeouts and dropped connections (tenacity).
        ``missing_ok``: None when the server has no such endpoint (404, 405, 501)."""
        import httpx
        from tenacity import (
            AsyncRetrying,
            RetryError,
            retry_if_exception_type,
            stop_after_attempt,
            wait_random_exponential,
        )

        backoff = wait_random_exponential(multiplier=0.5, max=30.0)  # "full jitter"
        where = path if "://" in path else self.base_url + path  # a whole URL, or under the root

        def wait(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "after", None)
            return min(after, 60.0) if after is not None else backoff(state)

        def count(state: Any) -> None:
            self.stats["retries"] += 1

        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(self.max_retries + 1),
                                               wait=wait, before_sleep=count,
                                               retry=retry_if_exception_type(_Retryable)):
                with attempt:
                    self.stats["requests"] += 1
                    try:
                        r = await client.post(path, json=body, headers=headers)
                        payload = r.content
                    except httpx.TimeoutException:
                        raise _Retryable(f"no answer within {self.timeout:g} s") from None
                    except httpx.TransportError as e:
                        raise _Retryable(f"{type(e).__name__}: {first_line(str(e))}") from None
                    if missing_ok and r.status_code in MISSING_STATUS:
                        return None
                    if r.status_code in RETRY_STATUS:
                        raise _Retryable(f"HTTP {r.status_code}: {_error_message(r)}",
                                         _retry_after(r.headers.get("retry-after")))
                    if r.status_code >= 400:
                        raise W2SError(f"{where} refused the request (HTTP "
                                       f"{r.status_code}): {_error_message(r)}")
                    try:
                        return json.loads(payload)
                    except ValueError:
                        raise _Retryable("the answer was not complete JSON") from None
        except RetryError as e:
            last = e.last_attempt.exception()
            raise W2SError(f"{where}: gave up after {self.max_retries + 1} tries "
                           f"({last})") from None
        raise AssertionError("unreachable")  # pragma: no cover


def _error_message(r: Any) -> str:
    try:
        err = r.json()
        msg = err.get("error", err) if isinstance(err, dict) else err
        if isinstance(msg, dict):
            msg = msg.get("message") or msg
        return first_line(str(msg))
    except ValueError:
        return first_line(r.text) or "no message"


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, also when an event loop is running in
    this thread (a server): then in a worker thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()

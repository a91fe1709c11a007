"""REST with retries: one httpx client to one server.

`Rest.call` backs off on 429/503 (honouring `Retry-After`, capped at 60 s) and on transport
errors, `tries` times in all, and reports each retry's reason (`http_429`, `ConnectTimeout`, ...)
to `on_retry`; it returns the last answer whatever its status. `Rest.json` turns a status other
than the expected ones into `ApiError` and transport failures into `Unreachable`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from roomserver.client.errors import RETRY_STATUSES, ApiError, TargetError, Unreachable

OnRetry = Callable[[str], None]


def targets(url: str) -> tuple[str, str]:
    """(http base, ws base) of a server URL given as http(s):// or ws(s)://."""
    parts = urlsplit(url)
    scheme = {"http": ("http", "ws"), "https": ("https", "wss"), "ws": ("http", "ws"),
              "wss": ("https", "wss")}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise TargetError(f"not an http(s) or ws(s) server URL: {url!r}")
    base = parts.netloc + parts.path.rstrip("/")
    return f"{scheme[0]}://{base}", f"{scheme[1]}://{base}"


def retry_after(raw: str | None, default: float) -> float:
    """A `Retry-After` header in seconds (0-60), or `default` when absent or not a number."""
    try:
        return min(max(float(raw or default), 0.0), 60.0)
    except ValueError:
        return default


class Rest:
    """Retrying REST calls to one server. Owns its httpx client unless one is given."""

    def __init__(self, url: str, *, http: httpx.AsyncClient | None = None, concurrency: int = 32,
                 tries: int = 8, timeout: float = 30, on_retry: OnRetry | None = None) -> None:
        self.base, _ = targets(url)
        self._own = http is None
        self.http = http or httpx.AsyncClient(base_url=self.base, timeout=timeout,
                                              limits=httpx.Limits(max_connections=concurrency))
        self._gate = asyncio.Semaphore(concurrency)
        self._tries, self._on_retry = max(1, tries), on_retry

    async def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                   token: str | None = None, tries: int | None = None) -> httpx.Response:
        """The server's answer, retried on 429/503 and transport errors; raises Unreachable."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        tries = max(1, tries or self._tries)
        for attempt in range(tries):
            wait = min(0.25 * 2 ** attempt, 10.0)
            try:
                async with self._gate:
                    answer = await self.http.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                if attempt == tries - 1:
                    raise Unreachable(f"{method} {path}: {type(exc).__name__}", exc) from exc
                reason = type(exc).__name__
            else:
                if answer.status_code not in RETRY_STATUSES or attempt == tries - 1:
                    return answer
                wait = retry_after(answer.headers.get("retry-after"), wait)
                reason = f"http_{answer.status_code}"
            if self._on_retry is not None:
                self._on_retry(reason)
            await asyncio.sleep(wait + random.uniform(0, 0.25))
        raise AssertionError("unreachable")

    async def json(self, method: str, path: str, *, expect: tuple[int, ...] = (200,),
                   **kwargs: Any) -> Any:
        """The decoded body of an expected answer; ApiError for any other status."""
        answer = await self.call(method, path, **kwargs)
        if answer.status_code not in expect:
            raise ApiError.from_response(answer)
        return answer.json()

    async def aclose(self) -> None:
        if self._own:
            await self.http.aclose()

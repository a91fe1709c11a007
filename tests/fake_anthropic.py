"""A local HTTP server that speaks the Anthropic streaming Messages API, for tests.

`POST /v1/messages` with `"stream": true` answers `text/event-stream` with the real event
sequence: message_start, content_block_start, ping, content_block_delta (text_delta) per
piece, content_block_stop, message_delta (stop_reason, usage), message_stop. It checks the
`Authorization: Bearer <key>` and `anthropic-version` headers as the API does, records every
request (headers and JSON body) and plays scripted behaviours in order:

    fake.script(Reply(["Which ", "page?"]))      # a normal streamed answer
    fake.script(Overloaded())                    # HTTP 529 overloaded_error
    fake.script(MidStreamError(["Partial "]))    # some deltas, then an `error` event
    fake.script(Stall(["Hmm"]))                  # some deltas, then silence

With nothing scripted it answers `Reply(default_pieces)`.

As a pytest plugin (tests/conftest.py) it gives every module the `fake` fixture: one server per
module, its script and recordings shared by the module's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from roomserver.store.ports import free_port
from tests.servers import serve_asgi


@dataclass(frozen=True)
class Reply:
    pieces: list[str]
    input_tokens: int = 120
    output_tokens: int = 30
    delay: float = 0.0
    """Seconds between deltas."""


@dataclass(frozen=True)
class Overloaded:
    pass


@dataclass(frozen=True)
class MidStreamError:
    pieces: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stall:
    pieces: list[str] = field(default_factory=list)


Behaviour = Reply | Overloaded | MidStreamError | Stall


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def raw(self) -> str:
        """The body as one string, for 'never appears anywhere' assertions."""
        return json.dumps(self.body, ensure_ascii=False)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)


class FakeAnthropic:
    def __init__(self, api_key: str = "sk-test-key", default_pieces: list[str] | None = None) -> None:
        self.api_key = api_key
        self.default = Reply(default_pieces or ["What does ", "the passage ", "say first?"])
        self.requests: list[Recorded] = []
        self.scripted: deque[Behaviour] = deque()
        self.open_streams = 0
        self._release = asyncio.Event()
        self.url = ""

    def script(self, *behaviours: Behaviour) -> None:
        self.scripted.extend(behaviours)

    def reset(self) -> None:
        self.requests.clear()
        self.scripted.clear()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

    async def _messages(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        body = await request.json()
        self.requests.append(Recorded(dict(request.headers), body))
        if not body.get("stream"):
            return _error(400, "invalid_request_error", "this fake only streams")
        behaviour = self.scripted.popleft() if self.scripted else self.default
        if isinstance(behaviour, Overloaded):
            return _error(529, "overloaded_error", "Overloaded")
        return StreamingResponse(self._events(body, behaviour), media_type="text/event-stream")

    async def _events(self, body: dict[str, Any], behaviour: Behaviour) -> AsyncIterator[bytes]:
        self.open_streams += 1
        try:
            usage_in = behaviour.input_tokens if isinstance(behaviour, Reply) else 50
            yield sse("message_start", {"type": "message_start", "message": {
                "id": "msg_fake01", "type": "message", "role": "assistant", "content": [],
                "model": body.get("model"), "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": 1}}})
            yield sse("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})
            yield sse("ping", {"type": "ping"})
            for piece in behaviour.pieces if not isinstance(behaviour, Overloaded) else []:
                if isinstance(behaviour, Reply) and behaviour.delay:
                    await asyncio.sleep(behaviour.delay)
                yield sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": piece}})
            if isinstance(behaviour, MidStreamError):
                yield sse("error", {"type": "error", "error": {"type": "overloaded_error",
                                                              "message": "Overloaded"}})
                return
            if isinstance(behaviour, Stall):
                await self._release.wait()
                return
            assert isinstance(behaviour, Reply)
            yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield sse("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                        "usage": {"output_tokens": behaviour.output_tokens}})
            yield sse("message_stop", {"type": "message_stop"})
        finally:
            self.open_streams -= 1

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeAnthropic]:
        async with serve_asgi(self.app(), free_port(), lifespan="off") as url:
            self.url = url
            try:
                yield self
            finally:
                self._release.set()  # let stalled streams end so shutdown does not wait on them


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic().serve() as server:
        yield server

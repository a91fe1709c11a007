"""Opening a room socket: the handshake, its refusals and retries, and the `welcome`.

`open_socket` offers `roomserver.v1` and `bearer.<token>` (the token never goes in the URL),
asks for recovery with `?last_seq=N` when given, and reads the first frame. A refusal before
accept is an HTTP answer with the REST error body: it raises `ApiError` with that status and
code. It retries, `tries` times in all, on 429/503 (after `Retry-After`) and on transport
errors (exponential back-off with jitter); any other refusal, or a first frame that is not
`welcome` (`UnexpectedFrame`), is final. Each failure's reason (`http_<status>`, the
exception's class name, `first_frame_<type>`) goes to `on_failure`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from roomserver.client.errors import (
    RETRY_STATUSES,
    ApiError,
    ClientError,
    UnexpectedFrame,
    Unreachable,
)
from roomserver.client.rest import retry_after, targets
from roomserver.protocol import BEARER_PREFIX, SUBPROTOCOL, Welcome, decode_server

OnFailure = Callable[[str], None]


@dataclass(frozen=True)
class SocketOptions:
    """How sockets are opened; the defaults suit an application, the load tester sets its own."""

    origin: str | None = None
    deflate: bool = False
    max_size: int | None = 2**22
    open_timeout: float = 15.0
    ping_interval: float | None = 20.0
    close_timeout: float = 2.0
    tries: int = 4
    local_addr: tuple[str, int] | None = None
    """Connect from this address (e.g. one of 127.0.0.0/8, as another client would)."""


DEFAULT_OPTIONS = SocketOptions()


@dataclass(frozen=True)
class Opened:
    ws: ClientConnection
    welcome: Welcome
    welcome_json: dict[str, Any]


def room_url(url: str, room_id: str, **query: Any) -> str:
    """The ws(s) URL of a room's socket; `query` (e.g. last_seq) is appended as is."""
    _, ws_base = targets(url)
    qs = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    return f"{ws_base}/ws/rooms/{room_id}" + (f"?{qs}" if qs else "")


async def open_socket(url: str, room_id: str, token: str, *, last_seq: int | None = None,
                      options: SocketOptions = DEFAULT_OPTIONS, on_failure: OnFailure | None = None,
                      **query: Any) -> Opened:
    """A socket in the room after its `welcome`; raises ApiError, Unreachable or UnexpectedFrame."""
    target = room_url(url, room_id, last_seq=last_seq, **query)
    failed: ClientError | None = None
    for attempt in range(max(1, options.tries)):
        try:
            return await _open_once(target, token, options)
        except ApiError as refused:
            _report(on_failure, f"http_{refused.status}")
            if refused.status not in RETRY_STATUSES:
                raise
            failed = refused
            await asyncio.sleep(refused.retry_after or 1.0)
        except Unreachable as exc:
            _report(on_failure, type(exc.cause).__name__)
            failed = exc
            await asyncio.sleep(0.2 * 2 ** attempt + random.uniform(0, 0.2))
        except UnexpectedFrame as exc:
            _report(on_failure, str(exc))
            raise
    assert failed is not None
    raise failed


def _report(on_failure: OnFailure | None, reason: str) -> None:
    if on_failure is not None:
        on_failure(reason)


async def _open_once(target: str, token: str, options: SocketOptions) -> Opened:
    extra: dict[str, Any] = {} if options.local_addr is None else {"local_addr": options.local_addr}
    try:
        ws = await connect(
            target, subprotocols=[SUBPROTOCOL, f"{BEARER_PREFIX}{token}"],  # type: ignore[list-item]
            origin=options.origin, compression="deflate" if options.deflate else None,  # type: ignore[arg-type]
            max_size=options.max_size, open_timeout=options.open_timeout,
            ping_interval=options.ping_interval, close_timeout=options.close_timeout, **extra)
        raw = await asyncio.wait_for(ws.recv(), options.open_timeout)
    except InvalidStatus as refused:
        response = refused.response
        error = ApiError.from_body(response.status_code, bytes(response.body or b""))
        if "retry-after" in response.headers and error.retry_after is None:
            error.details["retry_after"] = retry_after(response.headers["retry-after"], 1.0)
        raise error from None
    except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
        raise Unreachable(f"cannot open {target.split('?')[0]}: {type(exc).__name__}", exc) from exc
    first = orjson.loads(raw)
    if not isinstance(first, dict) or first.get("type") != "welcome":
        kind = first.get("type") if isinstance(first, dict) else None
        await ws.close()
        raise UnexpectedFrame(f"first_frame_{kind}")
    welcome = decode_server(raw)
    assert isinstance(welcome, Welcome)
    return Opened(ws, welcome, first)

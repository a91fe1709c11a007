"""A room socket that stays connected: acks, resend, resume, deduplication, the tutor stream.

Contract:
- `send(frame)` gives the frame a `client_msg_id` (unless it has one), keeps it until acked and
  returns the `Ack` (its `seq` is the event's); an `error` frame naming it raises `ApiError`.
- When the socket drops with a reconnectable code (docs/protocol.md: 1001/1006/1011/1012/1013,
  4000-4099) it reconnects with back-off, asking for `last_seq` = the highest durable seq
  delivered, and resends every unacked frame with its same `client_msg_id` (the server
  deduplicates; the ack carries the original seq). A code of 4100+ (or giving up) ends it:
  pending sends and `events()` raise `Closed`.
- `events()` yields every frame but acks and pongs; durable ones (with a `seq`) come in seq
  order, each once: a seq at or below the highest delivered is dropped, one past a gap is
  dropped and a `resume` fills the gap. A `recovered {complete: false}` is yielded as is: the
  range up to its `to_seq` is for `Client.messages` to reload.
- `ask(question)` streams the tutor's answer to that question: the `socratic_response` frames
  with its ref, ending with the `done` one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed

from roomserver.client.connect import DEFAULT_OPTIONS, Opened, SocketOptions, open_socket
from roomserver.client.errors import RETRY_STATUSES, ApiError, ClientError, Closed, reconnectable
from roomserver.protocol import (
    DURABLE_TYPES,
    Ack,
    ChatMessage,
    ClientFrame,
    Error,
    Pong,
    ProtocolError,
    Recovered,
    Resume,
    ServerFrame,
    SocraticQuery,
    SocraticResponse,
    Welcome,
    decode_server,
    encode,
)

ACKED = frozenset({"chat_message", "document_share", "highlight_create", "reaction_add",
                   "reaction_remove", "message_delete", "message_pin", "kick"})
"""Client frames the server answers with an `ack` (docs/protocol.md, acks)."""

_END = object()


class RoomSocket:
    """One user's socket in one room; open with `async with` (or `connect()` / `close()`)."""

    def __init__(self, url: str, room_id: str, token: str, *, options: SocketOptions = DEFAULT_OPTIONS,
                 reconnect: bool = True, reconnect_tries: int = 8) -> None:
        self.url, self.room_id, self._token = url, room_id, token
        self._options, self._reconnect, self._reconnect_tries = options, reconnect, reconnect_tries
        self._opened: Opened | None = None
        self._reader: asyncio.Task[None] | None = None
        self._outbox: dict[str, tuple[str, asyncio.Future[Ack]]] = {}
        self._asks: dict[str, asyncio.Queue[SocraticResponse | BaseException]] = {}
        self._events: asyncio.Queue[ServerFrame | object] = asyncio.Queue()
        self._high = -1
        self._resuming = False
        self._closed: Closed | None = None
        self._closing = False
        self.reconnects = 0

    # ---- lifecycle ----

    async def __aenter__(self) -> RoomSocket:
        await self.connect()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> Welcome:
        """Open the socket (ApiError when the room refuses); the `welcome`."""
        self._opened = await open_socket(self.url, self.room_id, self._token, options=self._options)
        self._high = self._opened.welcome.seq
        self._reader = asyncio.create_task(self._read())
        return self._opened.welcome

    @property
    def welcome(self) -> Welcome:
        if self._opened is None:
            raise ClientError("the socket is not open")
        return self._opened.welcome

    @property
    def seq(self) -> int:
        """The highest durable seq delivered (the welcome's seq before any event)."""
        return self._high

    def drop(self) -> None:
        """Cut the connection without a close frame, as a network failure would (it reconnects)."""
        if self._opened is not None:
            self._opened.ws.transport.abort()

    async def close(self) -> None:
        """Close with 1000; pending sends and `events()` end with `Closed`."""
        self._closing = True
        if self._opened is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._opened.ws.close(), self._options.close_timeout + 1)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, self._options.close_timeout + 1)
        self._end(Closed(1000, "closed by the client"))

    # ---- sending ----

    async def send(self, frame: ClientFrame) -> Ack:
        """Send a frame the server acks and wait for its `Ack` (resent across reconnects; bound
        the wait with `asyncio.timeout`: a timed-out frame stays queued for resend)."""
        if frame.type not in ACKED:
            raise ValueError(f"{frame.type} is not acked: use post()")
        frame = _with_id(frame)
        cmid = frame.client_msg_id
        assert cmid is not None
        done = self._outbox.get(cmid, (None, None))[1]
        if done is None:
            done = asyncio.get_running_loop().create_future()
            self._outbox[cmid] = (encode(frame), done)
            await self._write(self._outbox[cmid][0])
        return await asyncio.shield(done)

    async def chat(self, text: str, *, reply_to: str | None = None, client_msg_id: str | None = None) -> Ack:
        """Send a chat message; the `Ack` with its seq and message id."""
        frame = ChatMessage(text=text, reply_to=reply_to, client_msg_id=client_msg_id)
        return await self.send(frame)

    async def post(self, frame: ClientFrame) -> None:
        """Send a frame nobody acks (typing, ping, socratic_cancel); lost if the socket drops."""
        await self._write(encode(frame))

    async def ask(self, question: str, *, thread_id: str | None = None) -> AsyncIterator[SocraticResponse]:
        """The tutor's answer to `question`: its frames in order, the last one `done`."""
        frame = _with_id(SocraticQuery(question=question, thread_id=thread_id))
        cmid = frame.client_msg_id
        assert cmid is not None
        queue = self._asks[cmid] = asyncio.Queue()
        try:
            await self._write(encode(frame))
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.done:
                    return
        finally:
            self._asks.pop(cmid, None)

    async def _write(self, text: str) -> None:
        if self._closed is not None:
            raise self._closed
        if self._opened is None:
            raise ClientError("the socket is not open")
        with contextlib.suppress(ConnectionClosed):  # the reader reconnects and resends
            await self._opened.ws.send(text)

    # ---- receiving ----

    async def events(self) -> AsyncIterator[ServerFrame]:
        """Every frame but acks and pongs, durable ones in seq order, each once; ends with
        `Closed` raised (after `close()` too)."""
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)
                assert self._closed is not None
                raise self._closed
            yield item  # type: ignore[misc]

    async def next_event(self) -> ServerFrame:
        """The next frame `events()` would yield."""
        async for frame in self.events():
            return frame
        raise AssertionError("unreachable")

    async def _read(self) -> None:
        while True:
            assert self._opened is not None
            try:
                raw = await self._opened.ws.recv()
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                reason = closed.rcvd.reason if closed.rcvd else ""
                if self._closing or not (self._reconnect and reconnectable(code)):
                    self._end(Closed(code, reason))
                    return
                if not await self._reopen():
                    self._end(Closed(code, reason or "could not reconnect"))
                    return
                continue
            with contextlib.suppress(ProtocolError):  # a frame type newer than this client
                self._take(decode_server(raw))

    def _take(self, frame: ServerFrame) -> None:
        match frame:
            case Ack():
                entry = self._outbox.pop(frame.client_msg_id, None)
                if entry is not None and not entry[1].done():
                    entry[1].set_result(frame)
            case Pong():
                pass
            case Error() if frame.ref is not None and frame.ref in self._outbox:
                failed = self._outbox.pop(frame.ref)[1]
                if not failed.done():
                    failed.set_exception(_api_error(frame))
            case Error() if frame.ref is not None and frame.ref in self._asks:
                self._asks[frame.ref].put_nowait(_api_error(frame))
            case SocraticResponse():
                if frame.ref is not None and frame.ref in self._asks:
                    self._asks[frame.ref].put_nowait(frame)
                self._events.put_nowait(frame)
            case Recovered():
                self._resuming = False
                self._high = max(self._high, frame.to_seq)
                self._events.put_nowait(frame)
            case _ if frame.type in DURABLE_TYPES:
                self._durable(frame)
            case _:
                self._events.put_nowait(frame)

    def _durable(self, frame: ServerFrame) -> None:
        seq: int = getattr(frame, "seq")  # noqa: B009 - every durable frame has one
        if seq <= self._high:
            return
        if seq > self._high + 1:
            if not self._resuming:
                self._resuming = True
                asyncio.get_running_loop().create_task(self._write(encode(Resume(last_seq=self._high))))
            return
        self._high = seq
        self._events.put_nowait(frame)

    async def _reopen(self) -> bool:
        """Reconnect with `last_seq` and resend what is unacked; False when it cannot."""
        for attempt in range(self._reconnect_tries):
            await asyncio.sleep(min(0.05 * 2 ** attempt, 5.0) + random.uniform(0, 0.1))
            try:
                self._opened = await open_socket(self.url, self.room_id, self._token,
                                                 last_seq=self._high, options=self._options)
            except ApiError as refused:
                if refused.status not in RETRY_STATUSES:
                    return False
                continue
            except ClientError:
                continue
            self.reconnects += 1
            self._resuming = True  # the server replays after the welcome, then `recovered`
            for text, _ in list(self._outbox.values()):
                await self._write(text)
            return True
        return False

    def _end(self, closed: Closed) -> None:
        if self._closed is not None:
            return
        self._closed = closed
        for _, done in self._outbox.values():
            if not done.done():
                done.set_exception(closed)
        self._outbox.clear()
        for queue in self._asks.values():
            queue.put_nowait(closed)
        self._events.put_nowait(_END)


def _with_id(frame: ClientFrame) -> Any:
    if frame.client_msg_id is not None:
        return frame
    return frame.model_copy(update={"client_msg_id": uuid.uuid4().hex})


def _api_error(frame: Error) -> ApiError:
    details: dict[str, Any] = {} if frame.retry_after is None else {"retry_after": frame.retry_after}
    return ApiError(frame.code, frame.message, details=details, ref=frame.ref)

"""`/ws/rooms/{room_id}`: the WebSocket edge (the only module importing Starlette's WebSocket).

Handshake (see docs/protocol.md): refusals known before accept (bad Origin, bad room id or
`last_seq`, an offered bearer token that is unknown/revoked, a join the room policy refuses)
are HTTP denial responses with the JSON error body of the REST API, so a browser never sees
an open socket. A client that authenticates with a first `auth` frame is accepted first;
its refusals are an `error` frame then a close with the matching 41xx code.

Every handshake is charged to the client IP's bucket (IPv6 by /64) before anything else is
read, and holds one of the IP's WS_SOCKETS_PER_IP places on this node while open; a signed-in
socket also holds one of its user's WS_SOCKETS_PER_USER. Past a cap: 429 `too_many_sockets`
before accept, or (after an `auth` frame) an `error` frame and close 4005.

Per connection: handshaking -> joined -> closed. Frames are handled one at a time in
arrival order (so at most one `resume` replays at a time); every refusal is a typed `error`
frame and never closes the socket, except: a frame over 64 KiB (close 1009) and a flood (close
4004): more than FLOOD_STRIKES rate-limited or invalid (undecodable, malformed, unexpected)
frames, refilling one a second. Replays (`resume`, `?last_seq`) are limited per socket
(WS_RESUME_PER_MINUTE, a burst of RESUME_BURST) and in bytes (WS_REPLAY_MAX_BYTES); a refused
`resume` counts toward the flood close like any rate-limited frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from enum import Enum
from typing import Any

import orjson
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from roomserver import errors
from roomserver.api.http import JSONResponse, client_key
from roomserver.errors import CloseCode
from roomserver.identity.sessions import Session
from roomserver.observe import logs
from roomserver.protocol import (
    MAX_FRAME_BYTES,
    SUBPROTOCOL,
    Auth,
    Error,
    Member,
    ProtocolError,
    Resume,
    RoomInfo,
    Welcome,
    decode_client,
    encode,
    token_from_subprotocols,
)
from roomserver.ratelimit import RateLimiter, Slot
from roomserver.realtime.frames import Frames
from roomserver.realtime.hub import Connection
from roomserver.realtime.node import REMOVALS, Caller, Realtime
from roomserver.state import AppState
from roomserver.values import as_uuid

log = logging.getLogger(__name__)

WRITE_TEXT = "roomserver.write_text"
"""ASGI scope extension set by FrameCachingProtocol: a sync `write_text(str) -> bool`."""
HOLD_MAX = 4096
"""Frames buffered for one socket while it recovers; past it the socket must resume again."""
FLOOD_STRIKES = 20
"""Rate-limited or invalid frames (refilling one per second) a socket may send before it is closed 4004."""
RESUME_BURST = 3
"""`resume` frames a socket may send at once before WS_RESUME_PER_MINUTE paces them."""

REFUSAL_CLOSE = {
    "banned": CloseCode.BANNED, "room_closed": CloseCode.ROOM_CLOSED,
    "room_not_found": CloseCode.ROOM_NOT_FOUND, "insufficient_holdings": CloseCode.NO_LONGER_QUALIFIES,
    "not_in_collection": CloseCode.NO_LONGER_QUALIFIES, "too_many_sockets": CloseCode.TOO_MANY_SOCKETS,
}


class Phase(Enum):
    HANDSHAKING = "handshaking"
    JOINED = "joined"
    CLOSED = "closed"


class SocketOutlet:
    """The hub's `Outlet` over a raw ASGI `send`.

    `write` steps the ASGI send coroutine once: under uvicorn it completes without
    suspending while the transport is writable, so nothing waits. If it would suspend, the
    frame is finished by a small task and later writes answer False (the hub backlogs them).
    `hold()` buffers frames while a recovery replay is sent; `release(up_to)` then drops
    durable frames with seq <= up_to (already replayed) and sends the rest in order.
    """

    def __init__(self, send: Send, write_text: Any = None) -> None:
        self._send = send
        self._write_text = write_text  # FrameCachingProtocol.write_text when serving with it
        self._inflight: asyncio.Task[None] | None = None
        self._held: list[str] | None = None
        self._overflow = False
        self._skip_through: int | None = None
        self.closed = False
        self.close_code: int | None = None
        """The code this socket was closed with, by us or (from its disconnect) the peer."""

    def write(self, text: str) -> bool:
        if self.closed:
            return True  # swallowed: the socket is going away
        if self._held is not None:
            self._hold(text)
            return True
        if self._skip(text):
            return True
        if self._inflight is not None and not self._inflight.done():
            return False
        if self._write_text is not None and self._write_text(text):
            return True  # framed (once per str) and written, no coroutine
        coro = self._send({"type": "websocket.send", "text": text})
        try:
            waiting = coro.send(None)  # type: ignore[attr-defined]  # an ASGI send is a coroutine
        except StopIteration:
            return True
        except Exception:
            self.closed = True  # the peer is gone; the receive loop will notice
            return True
        self._inflight = asyncio.ensure_future(self._finish(coro, waiting))
        return True

    @staticmethod
    async def _finish(coro: Any, waiting: Any) -> None:
        try:
            while True:
                if isinstance(waiting, asyncio.Future):
                    await asyncio.wait([waiting])
                else:
                    await asyncio.sleep(0)
                waiting = coro.send(None)
        except StopIteration:
            pass
        except Exception:
            log.debug("send to a closing socket failed", exc_info=True)
        finally:
            coro.close()

    async def send(self, text: str) -> None:
        if self.closed:
            return
        if self._held is not None:
            self._hold(text)
            return
        if not self._skip(text):
            await self.send_now(text)

    async def send_now(self, text: str) -> None:
        """Send past any hold (for welcome and replays), after the in-flight frame."""
        if self._inflight is not None and not self._inflight.done():
            await asyncio.wait([self._inflight])
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception:
            self.closed = True

    async def reply(self, text: str) -> None:
        """A direct answer (ack, error, pong) in order with what the hub hands this socket."""
        if not self.write(text):
            await self.send(text)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.close_code is None:
            self.close_code = code
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    def hold(self) -> None:
        self._held, self._overflow = [], False

    async def release(self, up_to: int | None) -> bool:
        """Stop holding; False if the hold overflowed (frames were lost: resume again)."""
        held, self._held = self._held or [], None
        if self._overflow:
            return False
        self._skip_through = up_to
        for text in held:
            await self.send(text)
        return True

    def _hold(self, text: str) -> None:
        assert self._held is not None
        if len(self._held) >= HOLD_MAX:
            self._overflow = True
            self._held.clear()
        elif not self._overflow:
            self._held.append(text)

    def _skip(self, text: str) -> bool:
        """Drop a durable frame the socket already got by replay (seq <= skip_through)."""
        if self._skip_through is None:
            return False
        seq = orjson.loads(text).get("seq")
        if not isinstance(seq, int) or text.startswith('{"type":"welcome"'):
            return False
        if seq <= self._skip_through:
            return True
        self._skip_through = None  # live delivery has passed the replay
        return False


KNOWN_CLOSE_CODES = frozenset({*CloseCode, *range(1000, 1016)})
"""Close codes a metric label may name; a peer's other codes count as `other`."""


def close_label(code: int | None) -> str:
    return str(code) if code in KNOWN_CLOSE_CODES else "other"


def _error_frame(exc: errors.RoomserverError, ref: str | None) -> str:
    retry = exc.retry_after if isinstance(exc, errors.RateLimited) else None
    return encode(Error(code=exc.code, message=exc.message[:500], ref=ref,
                        retry_after=None if retry is None else round(retry, 3)))


class RoomSocket:
    """One socket's life: handshake, join, frame loop, leave."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.ws = WebSocket(scope, receive, send)
        self.state: AppState = scope["state"]["rs"]
        self.realtime: Realtime = self.state.realtime
        self.frames: Frames = self.state.frames
        self.outlet = SocketOutlet(send, scope.get("extensions", {}).get(WRITE_TEXT))
        self.phase = Phase.HANDSHAKING
        self.flood: RateLimiter | None = None  # made on the first refusal: most sockets never need one
        per_minute = self.state.settings.ws_resume_per_minute
        self.resumes = RateLimiter(per_minute / 60, min(RESUME_BURST, per_minute))
        self.slots: list[Slot] = []  # places held in the per-IP and per-user socket caps
        self.metrics = self.state.metrics
        self.conn_id = uuid.uuid4().hex[:16]

    async def run(self) -> None:
        """The socket's whole life, with its ids in the log context (`roomserver.observe.logs`)."""
        logs.conn_id.set(self.conn_id)
        try:
            await self._run()
        finally:
            for slot in self.slots:
                slot.release()

    async def _run(self) -> None:
        try:
            ip = client_key(self.ws)
            await self.state.ip_limiter.hit(ip)  # a handshake is unauthenticated work
            self.slots.append(self.state.ip_sockets.claim(ip))
            room_id, last_seq = self._parse_target()
            self._check_origin()
            offered = list(self.ws.scope.get("subprotocols") or [])
            token = token_from_subprotocols(offered)
            session = None if token is None else await self._resolve(token)
            caller = None if session is None else await self._admit(session, room_id)
        except errors.RoomserverError as exc:
            log.info("websocket refused before accept: %s %s", exc.code, exc.message)
            self.metrics.ws_connects.labels("refused").inc()
            await self.ws.send_denial_response(JSONResponse(exc.to_body(), status_code=exc.status))
            return
        await self.ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        if caller is None:
            caller = await self._auth_frame(room_id)
            if caller is None:
                return
        await self._joined(caller, last_seq)

    # ---- handshake ----

    def _parse_target(self) -> tuple[uuid.UUID, int | None]:
        room_id = as_uuid(self.ws.path_params["room_id"], "room_not_found", "room")
        raw = self.ws.query_params.get("last_seq")
        if raw is None:
            return room_id, None
        if not raw.isdigit() or len(raw) > 18:
            raise errors.BadRequest("last_seq must be a non-negative integer", code="invalid_last_seq")
        return room_id, int(raw)

    def _check_origin(self) -> None:
        origin = self.ws.headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.state.settings.cors_origins:
            raise errors.Forbidden("this origin may not open sockets here", code="bad_origin")

    async def _resolve(self, token: str) -> Session:
        session = await self.state.sessions.resolve(token)
        if session is None:
            raise errors.Unauthorized("the session is unknown, expired or revoked",
                                      code="session_invalid")
        return session

    async def _admit(self, session: Session, room_id: uuid.UUID) -> Caller:
        self.slots.append(self.state.user_sockets.claim(session.user_id))
        logs.user_id.set(str(session.user_id))
        logs.room_id.set(str(room_id))
        member = await self.state.rooms.admit(session.user_id, session.wallet_address, room_id)
        return Caller(room_id=room_id, user_id=session.user_id, session_id=session.id,
                      username=member.username, wallet_address=session.wallet_address,
                      role=member.role)

    async def _auth_frame(self, room_id: uuid.UUID) -> Caller | None:
        """Wait for `{"type":"auth"}`; on failure send an error and close (41xx)."""
        timeout = self.state.settings.ws_auth_timeout_seconds
        try:
            message = await asyncio.wait_for(self.ws.receive(), timeout)
            if message["type"] == "websocket.disconnect":
                return None
            frame = decode_client(message.get("text") or message.get("bytes") or b"")
            if not isinstance(frame, Auth):
                raise errors.Unauthorized("authenticate first: send an auth frame",
                                          code="not_authenticated")
            return await self._admit(await self._resolve(frame.token), room_id)
        except TimeoutError:
            exc: errors.RoomserverError = errors.Unauthorized(
                "no auth frame in time", code="auth_timeout")
        except errors.RoomserverError as refusal:
            exc = refusal
        log.info("websocket refused after accept: %s", exc.code)
        self.metrics.ws_connects.labels("refused").inc()
        await self.outlet.send_now(_error_frame(exc, None))
        code = REFUSAL_CLOSE.get(exc.code, CloseCode.UNAUTHORIZED if exc.status == 401
                                 else CloseCode.FORBIDDEN)
        await self.outlet.close(code, exc.code)
        return None

    # ---- joined ----

    async def _joined(self, caller: Caller, last_seq: int | None) -> None:
        room = str(caller.room_id)
        conn = Connection(self.outlet, room, str(caller.user_id))
        self.outlet.hold()
        self.metrics.ws_connects.labels("joined").inc()
        self.metrics.ws_connections.inc()
        try:
            seq, members = await self.realtime.attach(conn, caller)
            info = await self.state.rooms.get(caller.room_id, caller.user_id)
            if await self._removed_meanwhile(caller, info.my_role is not None and info.is_active):
                return
            self.phase = Phase.JOINED
            focus = await self.state.focus.snapshot(caller.room_id)
            await self.outlet.send_now(encode(Welcome(
                you=caller.member, presence=[_member(m) for m in members], seq=seq,
                room=RoomInfo(id=room, name=info.name, room_type=info.room_type), focus=focus)))
            up_to = seq if last_seq is None else await self._replay(caller, last_seq)
            if not await self.outlet.release(up_to):
                await self.outlet.close(CloseCode.INSUFFICIENT_STATE, "recovery overflowed")
                return
            await self._loop(caller)
        except Exception:
            log.exception("websocket for room %s failed", room)
            await self.outlet.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.phase = Phase.CLOSED
            self.metrics.ws_connections.dec()
            await self.realtime.detach(conn, caller)
            await self.outlet.close(CloseCode.NORMAL, "")
            self.metrics.ws_disconnects.labels(close_label(self.outlet.close_code)).inc()

    async def _removed_meanwhile(self, caller: Caller, still_member: bool) -> bool:
        """A removal that committed between admission and this socket's subscription was
        never heard here: close as its notice would have (True), else False."""
        if still_member:
            return False
        reason = await self.state.rooms.standing(caller.room_id, caller.user_id)
        if reason is None:
            return False
        await self.outlet.close(*REMOVALS[reason])
        return True

    async def _replay(self, caller: Caller, last_seq: int) -> int:
        """Send events after `last_seq` then `recovered`; returns the seq replayed up to.
        Raises RateLimited past the socket's replay budget."""
        self.resumes.check("resume")
        replay = await self.realtime.replay(str(caller.room_id), last_seq)
        for text in replay.events:
            await self.outlet.send_now(text)
        await self.outlet.send_now(replay.recovered)
        return replay.up_to

    async def _loop(self, caller: Caller) -> None:
        while not self.outlet.closed:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                if self.outlet.close_code is None:  # the peer closed first
                    self.outlet.close_code = message.get("code", CloseCode.NORMAL)
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "replace"))
            if size > MAX_FRAME_BYTES:
                log.info("closing socket of %s: frame of %d bytes", caller.user_id, size)
                await self.outlet.close(CloseCode.MESSAGE_TOO_BIG, "frame too large")
                return
            await self._frame(caller, raw)

    async def _frame(self, caller: Caller, raw: str | bytes) -> None:
        ref: str | None = None
        try:
            try:
                frame = decode_client(raw)
            except ProtocolError:
                self.metrics.messages_received.labels("invalid").inc()
                raise
            self.metrics.messages_received.labels(frame.type).inc()
            ref = frame.client_msg_id
            if isinstance(frame, Resume):
                await self._resume(caller, frame.last_seq)
                return
            if isinstance(frame, Auth):
                raise errors.BadRequest("already authenticated", code="unexpected_frame")
            answer = await self.frames.handle(caller, frame)
            if answer is not None:
                await self.outlet.reply(answer)
        except ProtocolError as exc:
            log.info("bad frame from %s: %s %s", caller.user_id, exc.code, exc.message)
            await self.outlet.reply(_error_frame(exc, exc.ref))
            await self._strike(caller)
        except (errors.RateLimited, errors.BadRequest) as exc:  # throttled, or invalid for its state
            await self.outlet.reply(_error_frame(exc, ref))
            await self._strike(caller)
        except errors.RoomserverError as exc:
            log.info("frame from %s refused: %s %s", caller.user_id, exc.code, exc.message)
            await self.outlet.reply(_error_frame(exc, ref))
        except Exception:
            log.exception("frame from %s failed", caller.user_id)
            await self.outlet.reply(_error_frame(
                errors.RoomserverError("internal error; it has been logged"), ref))

    async def _strike(self, caller: Caller) -> None:
        """Count a rate-limited or invalid frame; past FLOOD_STRIKES (refilling 1/s) close 4004."""
        if self.flood is None:
            self.flood = RateLimiter(1.0, FLOOD_STRIKES)
        if self.flood.acquire("strikes") > 0:
            log.info("closing socket of %s: flood of refused frames", caller.user_id)
            await self.outlet.close(CloseCode.FLOOD, "flood")

    async def _resume(self, caller: Caller, last_seq: int) -> None:
        if caller.removed is not None:  # the socket is closing: no more history for it
            raise errors.Forbidden(f"you were removed from this room ({caller.removed})",
                                   code="removed_from_room")
        self.outlet.hold()
        up_to: int | None = None
        try:
            up_to = await self._replay(caller, last_seq)
        finally:
            if not await self.outlet.release(up_to):
                await self.outlet.close(CloseCode.INSUFFICIENT_STATE, "recovery overflowed")


def _member(info: dict[str, Any]) -> Member:
    return Member(**{k: v for k, v in info.items() if v is not None})


async def room_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app of `/ws/rooms/{room_id}`."""
    await RoomSocket(scope, receive, send).run()


def routes() -> list[WebSocketRoute]:
    return [WebSocketRoute("/ws/rooms/{room_id}", RoomSocketApp())]


class RoomSocketApp:
    """ASGI callable (a class instance, so Starlette hands it the raw `send`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await room_socket(scope, receive, send)


# ---- the transport: uvicorn's WebSocket protocol, building each fan-out frame once ----

from uvicorn.protocols.utils import ClientDisconnected  # noqa: E402
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol  # noqa: E402
from websockets.protocol import State  # noqa: E402


def text_frame(text: str) -> bytes:
    """One unmasked, final, uncompressed RFC 6455 text frame (what a server sends)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + data
    return b"\x81\x7f" + n.to_bytes(8, "big") + data


class FrameCachingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default (`websockets-sansio`) protocol, except that a text message is
    framed once per `str` OBJECT: the hub hands the same object to every member of a room,
    so the other members' sends are one `transport.write` of the cached bytes (measured in
    notes/realtime.md: ~20 % of the server's CPU at fan-out). Only sockets without
    extensions (no per-message deflate) take this path; everything else is uvicorn's own.
    `python -m roomserver serve` runs it (`--ws roomserver.api.ws:FrameCachingProtocol`)."""

    _last_text: str | None = None
    _last_frame = b""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.scope["extensions"][WRITE_TEXT] = self.write_text  # type: ignore[index,assignment]

    def write_text(self, text: str) -> bool:
        """Write one text message now, without a coroutine: the hub's fast path. False (and
        nothing written) unless the socket is open, extension-less and the transport is not
        paused; then the caller uses the ASGI `send`, which waits."""
        if (not self.handshake_complete or self.close_sent or self.disconnected
                or not self.writable.is_set() or self.conn.extensions
                or self.conn.state is not State.OPEN):
            return False
        cls = FrameCachingProtocol
        if cls._last_text is not text:
            cls._last_frame, cls._last_text = text_frame(text), text
        self.transport.write(cls._last_frame)
        return True

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and self._may_close_now():
            self._close_now(message.get("code", 1000), message.get("reason", "") or "")
            return
        text = message.get("text") if message["type"] == "websocket.send" else None
        if (text is None or message.get("bytes") is not None or not self.handshake_complete
                or self.close_sent or self.initial_response is not None or self.conn.extensions):
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        cls = FrameCachingProtocol
        if cls._last_text is not text:
            cls._last_frame, cls._last_text = text_frame(text), text
        self.transport.write(cls._last_frame)

    def _may_close_now(self) -> bool:
        return (self.handshake_complete and not self.close_sent and not self.disconnected
                and self.initial_response is None and not self.transport.is_closing())

    def _close_now(self, code: int, reason: str) -> None:
        """uvicorn's close, without first waiting for the transport to become writable: a
        socket cut for not reading (the hub's slow-consumer close) has a full buffer that may
        never drain, and waiting would lose the close. The close frame queues behind what is
        buffered; a peer that has not answered it within `close_timeout` is dropped."""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)


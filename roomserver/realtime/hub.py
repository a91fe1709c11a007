"""This process's connections and room membership; local fan-out of prepared frames.

The hub subscribes a room's broker channels when its first local member joins and
unsubscribes when the last leaves. A broker message is one encoded server frame (JSON
text); the hub reads its `seq` once and hands the SAME `str` to every local socket.

Slow sockets (the hybrid of notes/realtime.md): `Outlet.write` is tried first; when it
says the socket would wait, frames go to that socket's backlog, drained by one task per
slow socket. Past `max_backlog` frames or `max_backlog_bytes` the socket is closed with
CloseCode.SLOW_CONSUMER; ephemeral frames (typing) are dropped for a backlogged socket.

Ordering: durable frames carry the room `seq`. The hub delivers seq `last + 1` at once,
drops `seq <= last` as duplicates, and on a gap holds later frames, waits `reorder_wait`
for stragglers, then reads the missing range with `fetch_range` (the history reader) and
delivers it first. After a broker outage it repairs each room up to `current_seq(room)`.
If history cannot be read, the room's sockets are closed with INSUFFICIENT_STATE
(reconnect and resume).

Metrics (one update per frame, never per socket): `messages_delivered` grows by the number
of sockets a frame was handed to; `fanout_latency` observes, for each live in-order
`new_message`, the time from its commit (`created_at`) to the end of this node's fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

import orjson

from roomserver.errors import CloseCode
from roomserver.observe.metrics import Metrics
from roomserver.protocol import EPHEMERAL_TYPES
from roomserver.realtime.broker import Broker, room_documents, room_messages, room_presence

log = logging.getLogger(__name__)

FetchRange = Callable[[str, int, int], Awaitable[Sequence[tuple[int, str]]]]
"""(room_id, after_seq, up_to_seq) -> [(seq, encoded frame)] for after_seq < seq <= up_to_seq."""
CurrentSeq = Callable[[str], Awaitable[int]]
"""room_id -> the seq of the room's last durable event."""


class Outlet(Protocol):
    """The hub's view of one socket (implemented at the edge, e.g. over Starlette)."""

    def write(self, text: str) -> bool:
        """Send now if the socket can take it without waiting; False if it would wait
        (then nothing was sent)."""
    async def send(self, text: str) -> None:
        """Send, waiting as long as the socket needs."""
    async def close(self, code: int, reason: str) -> None: ...


class Connection:
    """One socket in one room. `user_id` is for the edge's policy and presence."""

    __slots__ = ("backlog", "backlog_bytes", "closed", "drainer", "outlet", "room_id", "user_id")

    def __init__(self, outlet: Outlet, room_id: str, user_id: str) -> None:
        self.outlet, self.room_id, self.user_id = outlet, room_id, user_id
        self.backlog: list[str] | None = None  # None: fast path (write directly)
        self.backlog_bytes = 0
        self.drainer: asyncio.Task[None] | None = None
        self.closed = False


class Room:
    __slots__ = ("conns", "held", "id", "last", "repair_to", "repairing")

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.conns: dict[Connection, None] = {}
        self.last: int | None = None  # last seq delivered; None until known
        self.held: dict[int, str] = {}
        self.repair_to = 0
        self.repairing = False


class Hub:
    def __init__(
        self,
        broker: Broker,
        *,
        fetch_range: FetchRange,
        current_seq: CurrentSeq,
        max_backlog: int = 256,
        max_backlog_bytes: int = 1 << 20,
        reorder_wait: float = 0.05,
        close_timeout: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._broker, self._fetch, self._current = broker, fetch_range, current_seq
        self.max_backlog, self.max_backlog_bytes = max_backlog, max_backlog_bytes
        self.reorder_wait, self.close_timeout = reorder_wait, close_timeout
        self._rooms: dict[str, Room] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._metrics = metrics or Metrics.unexposed()
        broker.on_resubscribed(self._on_resubscribed)

    # ---- membership ----

    def last_seq(self, room_id: str) -> int | None:
        """The seq up to which this node has delivered the room (for `welcome`)."""
        room = self._rooms.get(room_id)
        return None if room is None else room.last

    def members(self, room_id: str) -> list[Connection]:
        room = self._rooms.get(room_id)
        return [] if room is None else list(room.conns)

    async def join(self, conn: Connection) -> None:
        """Add a connection; the room's first local member subscribes its channels."""
        room = self._rooms.get(conn.room_id)
        if room is None:
            room = self._rooms[conn.room_id] = Room(conn.room_id)
            room.conns[conn] = None
            handler = self._handler(room)
            for channel in self.channels(room.id):
                await self._broker.subscribe(channel, handler)
            current = await self._current(room.id)
            if room.last is None:
                room.last = current
                if room.held:
                    self._start_repair(room, max(room.held))
        else:
            room.conns[conn] = None

    async def leave(self, conn: Connection) -> None:
        """Remove a connection (idempotent); the last local member unsubscribes."""
        conn.closed = True
        if conn.drainer is not None:
            conn.drainer.cancel()
        room = self._rooms.get(conn.room_id)
        if room is None:
            return
        room.conns.pop(conn, None)
        if not room.conns:
            del self._rooms[room.id]
            for channel in self.channels(room.id):
                await self._broker.unsubscribe(channel)

    @staticmethod
    def channels(room_id: str) -> tuple[str, ...]:
        return room_messages(room_id), room_presence(room_id), room_documents(room_id)

    # ---- receiving from the broker ----

    def _handler(self, room: Room) -> Callable[[str, bytes], None]:
        def on_message(channel: str, data: bytes) -> None:
            if self._rooms.get(room.id) is room:
                self.receive(room.id, data.decode())
        return on_message

    def receive(self, room_id: str, text: str) -> None:
        """Handle one encoded frame for a room: deliver in seq order, repair gaps."""
        room = self._rooms.get(room_id)
        if room is None:
            return
        head = orjson.loads(text)
        seq = head.get("seq") if head.get("type") != "welcome" else None
        if not isinstance(seq, int):
            self.deliver(room_id, text, ephemeral=head.get("type") in EPHEMERAL_TYPES)
            return
        if room.last is None or room.repairing:
            room.held[seq] = text
        elif seq <= room.last:
            return  # duplicate
        elif seq == room.last + 1:
            room.last = seq
            self._fanout(room, text, False)
            self._observe_latency(head)
        else:
            room.held[seq] = text
            self._start_repair(room, seq)

    # ---- fan-out ----

    def deliver(self, room_id: str, text: str, *, ephemeral: bool = False) -> None:
        """Hand one prepared frame to every local socket of the room (no seq checks)."""
        room = self._rooms.get(room_id)
        if room is not None:
            self._fanout(room, text, ephemeral)

    def send_to(self, conn: Connection, text: str, *, ephemeral: bool = True) -> None:
        """Hand one prepared frame to one local socket, with the room's slow-consumer rules."""
        room = self._rooms.get(conn.room_id)
        if room is not None and conn in room.conns:
            self._offer(room, conn, text, ephemeral)
            self._metrics.messages_delivered.inc()

    def _fanout(self, room: Room, text: str, ephemeral: bool) -> None:
        conns = tuple(room.conns)
        for conn in conns:
            self._offer(room, conn, text, ephemeral)
        self._metrics.messages_delivered.inc(len(conns))

    def _observe_latency(self, head: dict[str, object]) -> None:
        message = head.get("message")
        created = message.get("created_at") if isinstance(message, dict) else None
        if isinstance(created, str):
            with contextlib.suppress(ValueError):
                committed = datetime.fromisoformat(created).timestamp()
                self._metrics.fanout_latency.observe(max(0.0, time.time() - committed))

    def _offer(self, room: Room, conn: Connection, text: str, ephemeral: bool) -> None:
        if conn.backlog is None:
            if conn.outlet.write(text):
                return
            conn.backlog = []
            conn.drainer = self._spawn(self._drain(conn))
        if ephemeral:
            return  # a slow socket may miss typing indicators
        conn.backlog.append(text)
        conn.backlog_bytes += len(text)
        if len(conn.backlog) > self.max_backlog or conn.backlog_bytes > self.max_backlog_bytes:
            conn.closed = True  # no more frames; it resumes from history after reconnecting
            room.conns.pop(conn, None)
            conn.backlog.clear()
            self._metrics.slow_consumer_disconnects.inc()
            self._spawn(self.disconnect(conn, CloseCode.SLOW_CONSUMER, "slow consumer"))

    async def _drain(self, conn: Connection) -> None:
        backlog = conn.backlog
        assert backlog is not None
        while backlog and not conn.closed:
            text = backlog.pop(0)
            conn.backlog_bytes -= len(text)
            await conn.outlet.send(text)
        conn.backlog, conn.drainer = None, None

    async def disconnect(self, conn: Connection, code: int, reason: str) -> None:
        """Stop delivering to `conn` and close it, bounded by `close_timeout`."""
        await self.leave(conn)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.outlet.close(code, reason), self.close_timeout)

    async def close_all(self, code: int, reason: str) -> None:
        """Close every local socket (graceful shutdown uses CloseCode.SHUTDOWN)."""
        conns = [c for room in list(self._rooms.values()) for c in room.conns]
        await asyncio.gather(*(self.disconnect(c, code, reason) for c in conns))

    # ---- gap repair ----

    def _start_repair(self, room: Room, up_to: int) -> None:
        room.repair_to = max(room.repair_to, up_to)
        if not room.repairing and room.last is not None:
            room.repairing = True
            self._spawn(self._repair(room))

    def _release_held(self, room: Room) -> None:
        assert room.last is not None
        for seq in sorted(room.held):
            if seq <= room.last:
                del room.held[seq]
            elif seq == room.last + 1:
                room.last = seq
                self._fanout(room, room.held.pop(seq), False)
            else:
                return

    def _settled(self, room: Room) -> bool:
        self._release_held(room)
        assert room.last is not None
        return not room.held and room.last >= room.repair_to

    async def _repair(self, room: Room) -> None:
        try:
            while not self._settled(room):
                await asyncio.sleep(self.reorder_wait)  # stragglers from other publishers
                if self._settled(room):
                    break
                assert room.last is not None
                up_to = min(room.held) - 1 if room.held else room.repair_to
                events = await self._fetch_with_retry(room, room.last, up_to)
                if events is None:
                    return
                for seq, text in sorted(events):
                    if room.last < seq <= up_to:
                        room.last = seq
                        self._fanout(room, text, False)
                room.last = max(room.last, up_to)  # history is the truth about that range
        finally:
            room.repairing = False

    async def _fetch_with_retry(
        self, room: Room, after: int, up_to: int
    ) -> Sequence[tuple[int, str]] | None:
        for attempt in range(3):
            try:
                return await self._fetch(room.id, after, up_to)
            except Exception:
                log.exception("reading room %s history %d..%d failed", room.id, after, up_to)
                await asyncio.sleep(0.1 * 2**attempt)
        room.held.clear()
        room.last = max(room.last or 0, room.repair_to)
        for conn in list(room.conns):
            self._spawn(self.disconnect(conn, CloseCode.INSUFFICIENT_STATE, "history unavailable"))
        return None

    async def _on_resubscribed(self, channels: frozenset[str]) -> None:
        for room in list(self._rooms.values()):
            try:
                current = await self._current(room.id)
            except Exception:
                log.exception("current seq of room %s unavailable", room.id)
                continue
            if room.last is not None and current > room.last:
                self._start_repair(room, current)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel background work (drainers, repairs); sockets are the edge's to close."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

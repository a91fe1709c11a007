"""Replay a trace against a running roomserver.

Setup: a host account signs in and creates one public room per trace room; every virtual
user signs in for real (SIWS, a keypair derived from the run's identity seed and its label)
and joins its rooms over REST, backing off on 429 as `Retry-After` says. Play: one task per
(user, room) socket plays that socket's events at `start + t / speed`, reading frames between
them; nothing else runs per frame. Then a drain waits (bounded) until every connected stream
caught up with its room's last seq, and the sockets close. Several workers (processes) each
take a share of the rooms; their measurements merge into one result (loadtests/metrics.py).
REST (with its retries), sign-in and opening sockets are `roomserver.client`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from roomserver.client import (
    ApiError,
    Rest,
    SocketOptions,
    UnexpectedFrame,
    Unreachable,
    Wallet,
    open_socket,
    reconnectable,
    sign_in,
    targets,
)
from roomserver.client.errors import RETRY_STATUSES
from roomserver.loadtests.metrics import Measurements
from roomserver.protocol import DURABLE_TYPES
from roomserver.realtime.trace import DURABLE_FRAME_TYPES, TraceEvent

T = TypeVar("T")
STAMP = " [lt:"
MAX_TEXT = 7900


@dataclass(frozen=True)
class Options:
    url: str
    speed: float = 1.0
    clients: int | None = None
    duration_limit: float = 300.0
    max_events: int = 1_000_000
    workers: int = 1
    drain: float = 10.0
    setup_concurrency: int = 32
    connect_timeout: float = 15.0
    identity_seed: str = field(default_factory=lambda: f"{random.getrandbits(64):x}")
    deflate: bool = False
    progress: bool = True


def select(events: list[TraceEvent], opts: Options) -> list[TraceEvent]:
    """The first `clients` virtual users (in order of appearance) and at most `max_events` events."""
    users: dict[str, None] = {}
    kept: list[TraceEvent] = []
    for event in sorted(events, key=lambda e: e.t):
        if event.user not in users:
            if opts.clients is not None and len(users) >= opts.clients:
                continue
            users[event.user] = None
        kept.append(event)
        if len(kept) >= opts.max_events:
            break
    return kept


def wallet_for(seed: str, user: str) -> Wallet:
    return Wallet.from_seed(hashlib.sha256(f"{seed}:{user}".encode()).digest())


# ---- REST ----


class SetupError(RuntimeError):
    pass


def rest_for(opts: Options, m: Measurements) -> Rest:
    """The setup's REST calls: retried, each retry counted in `m.rest_retries` by reason."""
    http_base, _ = targets(opts.url)
    return Rest(http_base, concurrency=opts.setup_concurrency,
                on_retry=lambda reason: m.rest_retries.update((reason,)))


async def _call(what: str, call: Awaitable[T]) -> T:
    """`call`'s result; a refusal or an unreachable server is a SetupError naming `what`."""
    try:
        return await call
    except (ApiError, Unreachable) as exc:
        raise SetupError(f"{what}: {exc}") from exc


async def _sign_in(rest: Rest, wallet: Wallet) -> str:
    return (await _call("sign-in", sign_in(rest, wallet))).token


async def create_rooms(opts: Options, events: list[TraceEvent]) -> dict[str, str]:
    """Sign in a host and create one public room per trace room; label -> room id."""
    members: dict[str, set[str]] = {}
    for event in events:
        members.setdefault(event.room, set()).add(event.user)
    rest = rest_for(opts, Measurements())
    try:
        token = await _sign_in(rest, wallet_for(opts.identity_seed, "__host__"))

        async def create(label: str) -> tuple[str, str]:
            size = min(10_000, max(2, len(members[label]) + 5))
            room = await _call(f"create room {label}", rest.json("POST", "/api/v1/rooms", token=token, json={
                "name": f"loadtest {label}"[:100], "room_type": "public", "max_participants": size},
                expect=(201,)))
            return label, str(room["id"])

        return dict(await asyncio.gather(*(create(label) for label in members)))
    finally:
        await rest.aclose()


# ---- play ----


@dataclass
class Shared:
    """State the sockets of one worker share."""

    opts: Options
    url: str
    run: str
    m: Measurements
    start_loop: float = 0.0
    stopping: bool = False
    finished: bool = False
    message_ids: dict[str, dict[str, str]] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)


class VirtualSocket:
    """One user's socket in one room, playing that pair's events."""

    def __init__(self, shared: Shared, user: str, token: str, room: str, room_id: str,
                 events: list[TraceEvent]) -> None:
        self.s, self.user, self.token, self.room, self.room_id = shared, user, token, room, room_id
        self.events = events
        self.conn: ClientConnection | None = None
        self.stream = shared.m.stream(room, user)
        self.pending: dict[str, tuple[float, dict[str, Any]]] = {}
        self.asked: dict[str, float] = {}
        self.recovering_since: float | None = None
        self.closing = False
        self.dead = False  # the server said: do not reconnect

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for event in self.events:
                await self._until(self.s.start_loop + event.t / self.s.opts.speed)
                if self.s.stopping:
                    break
                await self._act(event, loop.time())
            self.s.m.counts["played_sockets"] += 1
            await self._until(None)
        finally:
            await self._close()

    async def _until(self, due: float | None) -> None:
        """Read frames until `due` (loop time), or until the run finishes when None."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if (due is not None and (now >= due or self.s.stopping)) or self.s.finished:
                return
            window = 0.25 if due is None else min(due - now, 0.25)
            if self.conn is None:
                await asyncio.sleep(window)
                continue
            try:
                async with asyncio.timeout(window):
                    raw = await self.conn.recv()
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                await self._dropped(closed)
                continue
            self._frame(raw)

    # ---- events ----

    async def _act(self, event: TraceEvent, now: float) -> None:
        kind = event.type
        if kind == "join":
            if self.conn is None and not self.dead:
                await self._connect(resume=False)
            return
        if kind == "leave":
            await self._close()
            return
        if kind == "reconnect":
            if self.conn is not None:
                self.s.m.counts["reconnects"] += 1
                self.conn.transport.abort()
                await self._forget()
                await self._connect(resume=True)
            return
        if self.conn is None:
            self.s.m.skipped["not_connected"] += 1
            return
        frame = self._frame_for(event)
        if frame is None:
            return
        await self._send(frame, now)

    def _frame_for(self, event: TraceEvent) -> dict[str, Any] | None:
        frame = event.frame()
        ref = frame.pop("message_ref", None)
        needs_target = event.type in ("reaction_add", "reaction_remove", "message_delete", "message_pin")
        if ref is not None or (needs_target and "message_id" not in frame):
            target = self.s.message_ids.get(self.room, {}).get(ref) if ref else None
            target = target or self.s.latest.get(self.room)
            if target is None:
                self.s.m.skipped["no_message_yet"] += 1
                return None
            frame["message_id"] = target
        if event.type == "chat_message":
            text = str(frame.get("text") or "…")[:MAX_TEXT]
            frame["text"] = f"{text}{STAMP}{time.time():.6f}]"
        if event.type in DURABLE_FRAME_TYPES or event.type == "socratic_query":
            cmid = frame.get("client_msg_id") or f"{self.user}.{event.t}"
            frame["client_msg_id"] = f"{self.s.run}.{cmid}"[:128]
        return frame

    async def _send(self, frame: dict[str, Any], now: float) -> None:
        assert self.conn is not None
        cmid = frame.get("client_msg_id")
        if frame["type"] in DURABLE_FRAME_TYPES and cmid:
            self.pending[cmid] = (now, frame)
        elif frame["type"] == "socratic_query" and cmid:
            self.asked[cmid] = now
        try:
            await self.conn.send(orjson.dumps(frame).decode())
        except ConnectionClosed as closed:
            await self._dropped(closed)
            return
        self.s.m.sent[frame["type"]] += 1

    # ---- frames ----

    def _frame(self, raw: str | bytes) -> None:
        m = self.s.m
        now = time.time()
        frame = orjson.loads(raw)
        kind = frame.get("type")
        m.counts["frames"] += 1
        m.received[kind] += 1
        if kind in DURABLE_TYPES:
            seq = frame["seq"]
            m.counts["durable_deliveries"] += 1
            self.stream.deliver(seq)
            m.saw_seq(self.room, seq)
            if kind == "new_message":
                self._message(frame["message"], now)
        elif kind == "ack":
            sent = self.pending.pop(frame["client_msg_id"], None)
            m.counts["acks"] += 1
            if sent is not None:
                m.ack_latency.append(asyncio.get_running_loop().time() - sent[0])
            if isinstance(frame.get("seq"), int):
                m.saw_seq(self.room, frame["seq"])
        elif kind == "error":
            m.errors[frame.get("code", "?")] += 1
            self.pending.pop(frame.get("ref") or "", None)
            self.asked.pop(frame.get("ref") or "", None)
        elif kind == "recovered":
            self._recovered(frame)
        elif kind == "socratic_response" and frame.get("done"):
            asked = self.asked.pop(frame.get("ref") or "", None)
            if asked is not None:
                m.counts["tutor_answers"] += 1
                m.tutor.append(asyncio.get_running_loop().time() - asked)

    def _message(self, message: dict[str, Any], now: float) -> None:
        cmid = message.get("client_msg_id")
        if cmid:
            self.s.message_ids.setdefault(self.room, {})[cmid.split(".", 1)[-1]] = message["id"]
        self.s.latest[self.room] = message["id"]
        text = message.get("text", "")
        at = text.rfind(STAMP)
        if at >= 0 and text.endswith("]"):
            with contextlib.suppress(ValueError):
                sent = float(text[at + len(STAMP):-1])
                self.s.m.latency.append(now - sent)
                self.s.m.latency_at.append(now - self.s.m.start_wall)

    def _recovered(self, frame: dict[str, Any]) -> None:
        m = self.s.m
        if frame.get("complete"):
            m.counts["recovered_complete"] += 1
        else:
            m.counts["recovered_incomplete"] += 1
            self.stream.forgive(int(frame.get("to_seq", 0)))
        if self.recovering_since is not None:
            m.recovery.append(asyncio.get_running_loop().time() - self.recovering_since)
            self.recovering_since = None

    # ---- connection ----

    async def _connect(self, resume: bool, tries: int = 4) -> None:
        loop = asyncio.get_running_loop()
        m = self.s.m
        resume = resume and self.stream.high >= 0
        started = loop.time()
        options = SocketOptions(deflate=self.s.opts.deflate, open_timeout=self.s.opts.connect_timeout,
                                ping_interval=None, tries=tries)
        try:
            opened = await open_socket(self.s.url, self.room_id, self.token,
                                       last_seq=self.stream.high if resume else None, options=options,
                                       on_failure=lambda reason: m.connect_failures.update((reason,)))
        except (ApiError, UnexpectedFrame) as refused:
            if not isinstance(refused, ApiError) or refused.status not in RETRY_STATUSES:
                self.dead = True
                return
            self.stream.connected = False
            return
        except Unreachable:
            self.stream.connected = False
            return
        self.conn = opened.ws
        self.stream.connected = True
        m.counts["connects"] += 1
        m.counts["open_sockets"] += 1
        m.counts["peak_sockets"] = max(m.counts["peak_sockets"], m.counts["open_sockets"])
        if resume:
            self.recovering_since = started
        else:
            self.stream.baseline(opened.welcome.seq)
        await self._resend()

    async def _resend(self) -> None:
        """Frames sent but not acked before a drop go again with the same client_msg_id."""
        for cmid, (_, frame) in list(self.pending.items()):
            self.s.m.counts["resent"] += 1
            self.pending[cmid] = (asyncio.get_running_loop().time(), frame)
            with contextlib.suppress(ConnectionClosed):
                assert self.conn is not None
                await self.conn.send(orjson.dumps(frame).decode())

    async def _dropped(self, closed: ConnectionClosed) -> None:
        code = closed.rcvd.code if closed.rcvd else 1006
        if self.closing:
            return
        self.s.m.drops[str(code)] += 1
        await self._forget()
        if reconnectable(code):
            self.s.m.counts["reconnects"] += 1
            await asyncio.sleep(random.uniform(0.05, 0.5))
            await self._connect(resume=True)
        else:
            self.dead = True

    async def _forget(self) -> None:
        if self.conn is not None:
            self.conn = None
            self.stream.connected = False
            self.s.m.counts["open_sockets"] -= 1

    async def _close(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.closing = True
        await self._forget()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 3)
        self.closing = False

    def settled(self) -> bool:
        """Connected and caught up with the room's last known seq, with nothing unacked."""
        if self.conn is None:
            return True
        return not self.pending and self.stream.high >= self.s.m.room_high.get(self.room, -1)


Ready = Callable[[], Awaitable[float]]
Progress = Callable[[dict[str, Any]], None]


async def run_shard(events: list[TraceEvent], rooms: dict[str, str], opts: Options, run: str,
                    ready: Ready, progress: Progress) -> dict[str, Any]:
    """Sign in this shard's users, wait for the common start, play, drain; the measurements."""
    m = Measurements()
    shared = Shared(opts, opts.url, run, m)
    rest = rest_for(opts, m)
    by_socket: dict[tuple[str, str], list[TraceEvent]] = {}
    for event in events:
        by_socket.setdefault((event.user, event.room), []).append(event)
    users = sorted({user for user, _ in by_socket})
    try:
        tokens = dict(zip(users, await asyncio.gather(
            *(_sign_in(rest, wallet_for(opts.identity_seed, u)) for u in users)), strict=True))
        await asyncio.gather(*(_join(rest, tokens[user], rooms[room]) for user, room in by_socket))
    finally:
        await rest.aclose()
    start_wall = await ready()
    loop = asyncio.get_running_loop()
    m.start_wall = start_wall
    shared.start_loop = loop.time() + (start_wall - time.time())
    sockets = [VirtualSocket(shared, user, tokens[user], room, rooms[room], evs)
               for (user, room), evs in by_socket.items()]
    tasks = [asyncio.create_task(s.run()) for s in sockets]
    monitor = asyncio.create_task(_monitor(shared, sockets, progress))
    try:
        await asyncio.gather(*tasks)
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
    m.counts["unacked"] = sum(len(s.pending) for s in sockets)
    summary = m.summary()
    summary["played_seconds"] = m.counts.get("played_for_ms", 0) / 1000
    return summary


async def _join(rest: Rest, token: str, room_id: str) -> None:
    await _call("join room", rest.json("POST", f"/api/v1/rooms/{room_id}/join", token=token,
                                       expect=(200, 201)))


async def _monitor(shared: Shared, sockets: list[VirtualSocket], progress: Progress) -> None:
    """Ends the play at the duration limit, then the drain when all settled or at its deadline."""
    loop = asyncio.get_running_loop()
    opts, m = shared.opts, shared.m
    stop_at = shared.start_loop + opts.duration_limit
    drain_until: float | None = None
    shown = 0
    while not shared.finished:
        await asyncio.sleep(0.1)
        now = loop.time()
        if not shared.stopping and now >= stop_at:
            shared.stopping = True
        if drain_until is None and (shared.stopping or m.counts["played_sockets"] >= len(sockets)):
            m.counts["played_for_ms"] = int((now - shared.start_loop) * 1000)
            drain_until = now + opts.drain
        if drain_until is not None and (now >= drain_until or all(s.settled() for s in sockets)):
            shared.finished = True
        if int(now - shared.start_loop) != shown or shared.finished:
            shown = int(now - shared.start_loop)
            progress(m.snapshot() | {"elapsed": now - shared.start_loop, "draining": drain_until is not None})

"""This node's realtime service: lifecycle, local sockets, publishing, presence, repair and
cross-node notices. Frame dispatch is `roomserver.realtime.frames`.

Contracts:
- A durable event is written (history), THEN published (`publish_event`). If the publish
  fails it is still delivered locally, and other nodes repair from Postgres (hub gap
  repair, `sweep`).
- One publish-failure policy (`_publish`): a failed publish is counted (`health`), logged
  once per outage (at warning; again only after a publish succeeded), and, when the caller
  asks, delivered to this node's sockets instead.
- `sweep` (every `sweep_interval`): one query for the current seq of every room with
  local members; a room whose hub lags the seq seen at the previous sweep is repaired
  from history, so a lone last event whose publish was lost is not stranded.
- Presence: joins are published when the user was absent; leaves are published after
  the tracker's grace; every `presence_interval` each node diffs the shared store per
  local room and announces (locally) users that vanished without a notice (a crashed
  node: reason `timeout`). `PresenceFilter` drops duplicate join/leave notices.
- Removal (`remove`): applied here first, then a `member_removed` notice on the room's
  presence channel (if that publish is lost, other nodes' sockets still meet the durable
  write's own membership check); every node marks the user's callers in
  that room removed (frames then refuse them at once), closes their sockets with the
  reason's code (REMOVALS) and shows the others `user_left {reason}` (a later presence
  leave of the same user is then dropped as a duplicate). `user_id` None
  (room closed) removes everyone.
- Sessions: every `session_recheck` seconds and on a `session_revoked` notice on
  `global:notifications`, sockets of revoked or expired sessions close with SESSION_REVOKED.

The node imports no identity, gating, library, NFT or tutor module: what it needs of them
(the session check, the traffic observer) is passed at construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from roomserver.config import Settings
from roomserver.errors import CloseCode
from roomserver.observe.metrics import Metrics
from roomserver.observe.redact import redact_url
from roomserver.periodic import every
from roomserver.protocol import (
    Achievement,
    AchievementEarned,
    Member,
    Notification,
    Recovered,
    TypingStatus,
    UserJoined,
    UserLeft,
    encode,
)
from roomserver.realtime.broker import (
    GLOBAL_NOTIFICATIONS,
    Broker,
    Handler,
    MemoryBroker,
    RedisBroker,
    ResubscribedHook,
    redis_client,
    room_documents,
    room_messages,
    room_presence,
)
from roomserver.realtime.broker_cluster import ClusterBroker
from roomserver.realtime.history import Author, History, RowWriter, Written
from roomserver.realtime.hub import Connection, Hub
from roomserver.realtime.presence import MemoryPresence, Presence, PresenceTracker, RedisPresence

log = logging.getLogger(__name__)

Removal = Literal["kicked", "banned", "no_longer_qualifies", "room_closed", "left"]
REMOVALS: dict[str, tuple[CloseCode, str]] = {
    "banned": (CloseCode.BANNED, "banned from the room"),
    "kicked": (CloseCode.KICKED, "kicked by a moderator"),
    "room_closed": (CloseCode.ROOM_CLOSED, "the room was closed"),
    "no_longer_qualifies": (CloseCode.NO_LONGER_QUALIFIES, "no longer meets the room's token/NFT gate"),
    "left": (CloseCode.NORMAL, "left the room"),
}
"""Why a member's sockets in a room are closed on every node, with the close code and text."""
REMOVED = "member_removed"
"""The removal notice's type on a room's presence channel (node to node; never sent to clients)."""


@dataclass
class Caller:
    """One authenticated socket's identity in its room."""

    room_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID
    username: str | None
    wallet_address: str
    role: str
    removed: str | None = None
    """Set (to the REMOVALS reason) when a removal notice for this socket arrives."""

    @property
    def member(self) -> Member:
        return Member(user_id=str(self.user_id), username=self.username,
                      wallet_address=self.wallet_address, role=self.role)


SessionCheck = Callable[[uuid.UUID], Awaitable[bool]]
"""session_id -> whether the session is still live (not revoked, not expired)."""
FrameObserver = Callable[[str, str, str, dict[str, Any]], None]
"""(room_id, user_id, type, fields) for each join, leave and accepted client frame; the opt-in
traffic recorder (roomserver/realtime/recorder.py, RECORD_ROOMS) plugs in here. Must not raise or block."""


class HistoryView(Protocol):
    """The read-only face of a room's history that REST handlers may use."""

    async def messages(self, room_id: uuid.UUID, after_seq: int, limit: int) -> list[dict[str, Any]]: ...
    async def current_seq(self, room_id: str) -> int: ...


@dataclass(frozen=True)
class Replay:
    """What `resume` sends: the missed events (encoded), then `recovered`; `up_to` is the seq
    the socket is then up to (live frames at or below it are dropped as already replayed)."""

    events: list[str]
    recovered: str
    up_to: int


@dataclass(frozen=True)
class RealtimeConfig:
    """The node's tunables. Those that are settings have no default here: their defaults are
    declared once, in `Settings` (`from_settings(Settings())` gives them)."""

    recovery_window: int
    replay_max_bytes: int
    presence_ttl: float
    leave_grace: float
    session_recheck: float
    chat_per_minute: int
    typing_per_minute: int
    presence_interval: float = 1.0
    sweep_interval: float = 2.0

    @classmethod
    def from_settings(cls, s: Settings) -> RealtimeConfig:
        return cls(recovery_window=s.ws_recovery_window, replay_max_bytes=s.ws_replay_max_bytes,
                   presence_ttl=float(s.presence_ttl_seconds),
                   leave_grace=s.presence_leave_grace_ms / 1000,
                   session_recheck=float(s.ws_session_recheck_seconds),
                   chat_per_minute=s.ws_chat_per_minute, typing_per_minute=s.ws_typing_per_minute)


class PresenceFilter:
    """Wraps a broker: presence notices pass through `Realtime._on_presence` first, which
    may drop a duplicate; everything else is delegated unchanged."""

    def __init__(self, inner: Broker, check: Callable[[str, bytes], bool]) -> None:
        self._inner, self._check = inner, check

    @property
    def healthy(self) -> bool:
        return self._inner.healthy

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def publish(self, channel: str, data: bytes | str) -> None:
        await self._inner.publish(channel, data)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        if channel.endswith(":presence"):
            inner = handler

            def handler(ch: str, data: bytes) -> None:
                if self._check(ch, data):
                    inner(ch, data)
        await self._inner.subscribe(channel, handler)

    async def unsubscribe(self, channel: str) -> None:
        await self._inner.unsubscribe(channel)

    def on_resubscribed(self, hook: ResubscribedHook) -> None:
        self._inner.on_resubscribed(hook)


class Realtime:
    """One node. Callers use its methods only (never its hub, broker or history)."""

    def __init__(self, *, broker: Broker, store: Presence, history: History, config: RealtimeConfig,
                 session_live: SessionCheck, observer: FrameObserver | None = None,
                 node_id: str | None = None, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics.unexposed()
        self._outages_counted = 0
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._history, self._session_live, self._observer = history, session_live, observer
        self._raw_broker = broker
        self._broker = PresenceFilter(broker, self._on_presence)
        self._hub = Hub(self._broker, fetch_range=history.fetch_range, current_seq=history.current_seq,
                        metrics=self.metrics)
        self._store = store
        self._tracker = PresenceTracker(store, self.node_id, leave_grace=config.leave_grace,
                                        on_leave=self._announce_leave)
        self._local: dict[str, dict[Connection, Caller]] = {}
        self._seen: dict[str, set[str]] = {}  # room -> users announced present here
        self._lagging: dict[str, int] = {}
        self._present_before: dict[str, set[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Future[None]] = set()
        self.publish_failures = 0
        """Publishes the broker refused since start (health; one log line per outage)."""
        self._failing = False

    # ---- lifecycle ----

    async def start(self) -> None:
        await self._broker.start()
        await self._raw_broker.subscribe(GLOBAL_NOTIFICATIONS, self._on_notification)
        loops: list[tuple[str, float, Callable[[], Awaitable[None]]]] = [
            ("heartbeat", self.config.presence_ttl / 3, self._tracker.heartbeat),
            ("presence-diff", self.config.presence_interval, self.diff_presence),
            ("sweep", self.config.sweep_interval, self.sweep),
            ("session-recheck", self.config.session_recheck, self.recheck_sessions),
        ]
        for name, interval, step in loops:
            self._tasks.append(asyncio.create_task(every(f"realtime loop {name}", interval, step),
                                                   name=name))

    async def close(self) -> None:
        """Graceful stop: tell every socket to reconnect elsewhere, drop presence, stop loops."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self._hub.close_all(CloseCode.SHUTDOWN, "server shutting down; reconnect and resume")
        await self._tracker.close()
        await self._hub.close()
        await self._broker.close()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    async def health(self) -> dict[str, Any]:
        """For /health: red while the broker's subscriber is down."""
        return {"ok": self._broker.healthy,
                "detail": {"node": self.node_id, "local_rooms": len(self._local),
                           "outages": getattr(self._raw_broker, "outages", 0),
                           "publish_failures": self.publish_failures}}

    def sample_metrics(self) -> None:
        """The broker's state into `broker_up` and `broker_outages_total` (a metrics sampler)."""
        self.metrics.broker_up.set(1 if self._raw_broker.healthy else 0)
        outages = int(getattr(self._raw_broker, "outages", 0))
        if outages > self._outages_counted:
            self.metrics.broker_outages.inc(outages - self._outages_counted)
            self._outages_counted = outages

    # ---- local connections ----

    async def attach(self, conn: Connection, caller: Caller) -> tuple[int, list[dict[str, Any]]]:
        """Join the hub and presence; returns (seq delivered so far, presence snapshot)."""
        room = str(caller.room_id)
        self._local.setdefault(room, {})[conn] = caller
        await self._hub.join(conn)
        seq = self._hub.last_seq(room) or 0
        info = caller.member.model_dump(exclude_none=True)
        self.observe(caller, "join", {})
        first_here = room not in self._seen
        seen = self._seen.setdefault(room, set())
        try:
            announce = await self._tracker.connect(room, info)
            if announce:
                await self.publish_presence(room, encode(UserJoined(room_id=room, user=caller.member)))
            members = await self._store.members(room)
        except Exception as exc:  # presence is best effort: a Redis hiccup must not refuse the room
            log.warning("presence unavailable for room %s (%s); joining without it", room, exc)
            announce, members = False, [info]
        if first_here:  # the others already present; our own join arrives as a notice
            seen.update(str(m["user_id"]) for m in members
                        if not (announce and m["user_id"] == str(caller.user_id)))
        return seq, members

    async def detach(self, conn: Connection, caller: Caller) -> None:
        """Leave the hub and presence (idempotent)."""
        room = str(caller.room_id)
        conns = self._local.get(room, {})
        if conns.pop(conn, None) is None:
            return
        self.observe(caller, "leave", {})
        if not conns:
            self._local.pop(room, None)
            self._lagging.pop(room, None)
        await self._hub.leave(conn)
        await self._tracker.disconnect(room, str(caller.user_id))
        if room not in self._local:
            self._seen.pop(room, None)
            self._present_before.pop(room, None)

    def connections(self, room_id: str, user_id: str | None = None) -> list[Connection]:
        conns = self._local.get(room_id, {})
        return [c for c, who in conns.items() if user_id is None or str(who.user_id) == user_id]

    async def census(self, room_id: str) -> tuple[int, dict[str, int]]:
        """(users present in the room, per node id the users present through that node), from
        the shared presence store: every node's count (a crashed node's until they expire)."""
        return len(await self._store.members(room_id)), await self._store.nodes(room_id)

    async def present_users(self, room_id: str) -> set[str]:
        """The users present in the room through any node (the shared presence store)."""
        return {str(m["user_id"]) for m in await self._store.members(room_id)}

    def local_users(self, room_id: str) -> set[str]:
        """The users with a socket in the room on this node."""
        return {str(who.user_id) for who in self._local.get(room_id, {}).values()}

    @property
    def observing(self) -> bool:
        return self._observer is not None

    def observe(self, caller: Caller, kind: str, fields: dict[str, Any]) -> None:
        """Tell the traffic observer (if any) about a join, leave or accepted frame."""
        if self._observer is not None:
            try:
                self._observer(str(caller.room_id), str(caller.user_id), kind, fields)
            except Exception:
                log.exception("frame observer failed; frame handled anyway")

    async def typing(self, caller: Caller, typing: bool) -> None:
        """Set the caller's typing state and tell the room (ephemeral)."""
        room = str(caller.room_id)
        status = TypingStatus(room_id=room, user_id=str(caller.user_id), typing=typing)
        await self.publish_presence(room, encode(status))

    # ---- history for the edge ----

    async def replay(self, room_id: str, last_seq: int) -> Replay:
        """The events after `last_seq` and `recovered`: complete only within the recovery
        window (events) and `replay_max_bytes` (encoded bytes); otherwise nothing is replayed
        (`complete: false`: the client reloads over REST)."""
        current = await self._history.current_seq(room_id)
        complete = last_seq <= current and current - last_seq <= self.config.recovery_window
        events = ([text for _, text in await self._history.fetch_range(room_id, last_seq, current)]
                  if complete else [])
        if sum(len(text) for text in events) > self.config.replay_max_bytes:
            complete, events = False, []
        recovered = Recovered(complete=complete, from_seq=min(last_seq, current), to_seq=current)
        self.metrics.recoveries.labels("true" if complete else "false").inc()
        return Replay(events, encode(recovered), current)

    @property
    def history_view(self) -> HistoryView:
        """Read-only history (messages by seq, the room's current seq) for REST."""
        return self._history

    # ---- publishing ----

    async def _publish(self, channel: str, data: str | bytes,
                       local: Callable[[], None] | None = None, *, deaf_too: bool = False) -> bool:
        """THE publish-failure policy: count, log once per outage, then `local()` if given.
        `deaf_too`: also run `local()` after a publish that worked while our own subscriber is
        down (only for what is safe to receive twice)."""
        try:
            await self._broker.publish(channel, data)
        except Exception as exc:
            self.publish_failures += 1
            if not self._failing:
                log.warning("publish to %s failed (%s); %s", channel, exc,
                            "delivering locally" if local else "dropped")
            self._failing = True
            if local is not None:
                local()
            return False
        self._failing = False
        if deaf_too and local is not None and not self._raw_broker.healthy:
            local()
        return True

    async def publish_event(self, room_id: str, channel: str, text: str) -> None:
        """Publish a committed durable event; this node's sockets get it even when the broker
        cannot deliver it here (other nodes repair from history; the hub drops duplicates)."""
        await self._publish(channel, text, lambda: self._hub.receive(room_id, text), deaf_too=True)

    async def emit(self, room_id: str, text: str) -> None:
        """An ephemeral frame (no seq, e.g. a tutor delta) to the room's sockets on every node."""
        await self._publish(room_messages(room_id), text, lambda: self._hub.deliver(room_id, text))

    async def publish_presence(self, room_id: str, text: str) -> None:
        """A presence notice to the room on every node (through the duplicate filter here)."""
        channel = room_presence(room_id)

        def here() -> None:
            if self._on_presence(channel, text.encode()):
                self._hub.deliver(room_id, text)

        await self._publish(channel, text, here)

    async def remove(self, room_id: str, user_id: str | None, reason: Removal,
                     detail: str | None = None) -> None:
        """THE removal: close `user_id`'s sockets in the room (everyone's when None) on every
        node with the reason's close code (text: `reason: detail` when a detail is given).
        Call it after the membership change committed. Returns once this node's sockets are
        closed; other nodes close theirs when the notice reaches them."""
        notice = orjson.dumps({"type": REMOVED, "room_id": room_id, "user_id": user_id,
                               "reason": reason, "detail": detail, "node": self.node_id})
        closing = self._apply_removal(room_id, notice)
        await self._publish(room_presence(room_id), notice)
        await asyncio.gather(*closing)

    def _apply_removal(self, room: str, data: bytes) -> list[asyncio.Future[None]]:
        """Mark the removed callers, start closing their sockets, announce `user_left` once."""
        head = orjson.loads(data)
        reason, user, detail = str(head.get("reason")), head.get("user_id"), head.get("detail")
        if reason not in REMOVALS:
            return []
        code, text = REMOVALS[reason]
        text = f"{reason}: {detail}" if detail else text
        closing = []
        for conn, caller in list(self._local.get(room, {}).items()):
            if (user is None or str(caller.user_id) == user) and caller.removed is None:
                caller.removed = reason
                closing.append(self._spawn(self._close_removed(conn, caller, code, text)))
        if user is not None:  # a membership event: shown even for a user not present here
            self._seen.get(room, set()).discard(str(user))
            self._hub.deliver(room, encode(UserLeft(room_id=room, user_id=str(user), reason=reason)))
        return closing

    # ---- presence ----

    def _on_presence(self, channel: str, data: bytes) -> bool:
        """Decide whether a presence notice reaches local sockets (False: a duplicate)."""
        room = channel.split(":", 2)[1]
        try:
            head = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        kind, seen = head.get("type"), self._seen.setdefault(room, set())
        if kind == "user_joined":
            user = str(head.get("user", {}).get("user_id"))
            if user in seen:
                return False
            seen.add(user)
        elif kind == "user_left":
            user = str(head.get("user_id"))
            if user not in seen:
                return False
            seen.discard(user)
        elif kind == REMOVED:
            if head.get("node") != self.node_id:  # our own was applied before it was published
                self._apply_removal(room, data)
            return False
        return True

    async def _close_removed(self, conn: Connection, caller: Caller, code: int, text: str) -> None:
        await self.detach(conn, caller)
        await self._hub.disconnect(conn, code, text)
        with contextlib.suppress(Exception):  # leave now, skipping the reconnect grace
            await self._store.remove(str(caller.room_id), str(caller.user_id), self.node_id)

    async def _announce_leave(self, room_id: str, user_id: str) -> None:
        await self.publish_presence(room_id, encode(UserLeft(room_id=room_id, user_id=user_id,
                                                             reason="left")))

    async def diff_presence(self) -> None:
        """Announce locally the users that vanished from a local room without a notice."""
        for room in list(self._local):
            present = {str(m["user_id"]) for m in await self._store.members(room)}
            seen = self._seen.setdefault(room, set())
            for user in sorted(seen - present):
                seen.discard(user)
                self._hub.deliver(room, encode(UserLeft(room_id=room, user_id=user, reason="timeout")))
            seen |= present & self._present_before.get(room, set())  # a join notice we missed
            self._present_before[room] = present

    # ---- repair and sessions ----

    async def sweep(self) -> None:
        """Repair rooms whose hub lags the seq seen in Postgres at the previous sweep."""
        rooms = list(self._local)
        if not rooms:
            return
        current = await self._history.current_seqs(rooms)
        for room in rooms:
            delivered = self._hub.last_seq(room)
            target = self._lagging.get(room, 0)
            if delivered is not None and delivered < target:
                log.info("sweep: room %s delivered %d < %d; repairing", room, delivered, target)
                for _, text in await self._history.fetch_range(room, delivered, target):
                    self._hub.receive(room, text)
            self._lagging[room] = current.get(room, 0)

    async def recheck_sessions(self) -> None:
        by_session: dict[uuid.UUID, list[Connection]] = {}
        for conns in self._local.values():
            for conn, caller in conns.items():
                by_session.setdefault(caller.session_id, []).append(conn)
        for session_id, session_conns in by_session.items():
            if not await self._session_live(session_id):
                await self._close_session(session_conns)

    async def _close_session(self, conns: Sequence[Connection]) -> None:
        for conn in conns:
            await self._hub.disconnect(conn, CloseCode.SESSION_REVOKED, "session revoked or expired")

    def _on_notification(self, channel: str, data: bytes) -> None:
        try:
            note = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(note, dict) and note.get("type") == "user_notification":
            if isinstance(note.get("data"), dict):
                self._notify_local(str(note.get("user_id")), note["data"])
            return
        if isinstance(note, dict) and note.get("type") == "session_revoked":
            target = str(note.get("session_id"))
            conns = [c for room in self._local.values() for c, who in room.items()
                     if str(who.session_id) == target]
            if conns:
                self._spawn(self._close_session(conns))

    # ---- events from the REST side (library, highlights, NFTs, achievements) ----

    async def announce(self, room_id: uuid.UUID, text: str, metadata: dict[str, Any]) -> None:
        """A durable system message in the room (e.g. a minted NFT)."""
        written = await self._history.post_system(room_id, text, metadata)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_messages(str(room_id)), written.frame)

    async def post_tutor(self, room_id: uuid.UUID, asker_id: uuid.UUID, text: str,
                         metadata: dict[str, Any]) -> Written:
        """The tutor's final answer as a durable message (`History.post_tutor`), published
        after the commit like any chat message."""
        written = await self._history.post_tutor(room_id, asker_id, text, metadata)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_messages(str(room_id)), written.frame)
        return written

    async def document_shared(self, room_id: uuid.UUID, document: dict[str, Any],
                              actor_id: uuid.UUID) -> None:
        """`document_shared` on `room:{id}:documents` for a share made over REST."""
        doc_id = uuid.UUID(str(document["document_id"]))
        written = await self._history.share_document(room_id, Author(actor_id, None), doc_id,
                                                     document.get("title"), None, None)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_documents(str(room_id)), written.frame)

    async def highlight_created(self, room_id: uuid.UUID, actor_id: uuid.UUID,
                                write_row: RowWriter) -> None:
        """A highlight made over REST: its row (`write_row`) and `highlight_created` in one
        durable write, then published."""
        written = await self._history.create_highlight(room_id, actor_id, write_row)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_documents(str(room_id)), written.frame)

    async def announce_achievement(self, user_id: uuid.UUID, room_id: uuid.UUID | None,
                                   achievement: Achievement) -> None:
        """`achievement_earned` to the room it was earned in (everyone sees it), or to the
        user alone as a `notification` when it was earned outside a room. Best effort."""
        frame = AchievementEarned(user_id=str(user_id), achievement=achievement)
        if room_id is None:
            await self.notify_user(user_id, frame.model_dump(mode="json", exclude_none=True))
            return
        await self._publish(room_messages(str(room_id)), encode(frame))

    async def notify_user(self, user_id: uuid.UUID, payload: dict[str, Any]) -> None:
        """A `notification` frame to every socket of this user, on every node (best effort:
        REST has the state)."""
        note = orjson.dumps({"type": "user_notification", "user_id": str(user_id), "data": payload})
        await self._publish(GLOBAL_NOTIFICATIONS, note,
                            lambda: self._notify_local(str(user_id), payload))

    def _notify_local(self, user_id: str, data: dict[str, Any]) -> None:
        kind = str(data.get("type", "notification"))
        text = encode(Notification(kind=kind, data=data))
        for conns in self._local.values():
            for conn, caller in conns.items():
                if str(caller.user_id) == user_id:
                    self._hub.send_to(conn, text)

    async def session_revoked(self, session_id: uuid.UUID) -> None:
        """Tell every node to close this session's sockets now (REST sign-out calls this)."""
        note = orjson.dumps({"type": "session_revoked", "session_id": str(session_id)})
        await self._publish(GLOBAL_NOTIFICATIONS, note,
                            lambda: self._on_notification(GLOBAL_NOTIFICATIONS, note))


async def open_realtime(settings: Settings, stack: AsyncExitStack, history: History,
                        session_live: SessionCheck, modes: dict[str, str], *,
                        observer: FrameObserver | None = None,
                        metrics: Metrics | None = None) -> Realtime:
    """Redis broker + presence with REDIS_URL, else in-memory (one node); started, and
    closed by `stack` (graceful: sockets are told to reconnect)."""
    config = RealtimeConfig.from_settings(settings)
    broker: Broker
    store: Presence
    if settings.redis_url:
        cluster = settings.redis_cluster
        broker = ClusterBroker(settings.redis_url) if cluster else RedisBroker(settings.redis_url)
        client = redis_client(settings.redis_url, cluster=cluster)
        stack.push_async_callback(client.aclose)
        store = RedisPresence(client, ttl=config.presence_ttl)
        kind = "Redis Cluster sharded pub/sub" if cluster else "Redis pub/sub"
        modes["redis"] = f"{kind} + presence at {redact_url(settings.redis_url)}"
    else:
        broker, store = MemoryBroker(), MemoryPresence(ttl=config.presence_ttl)
        modes["redis"] = "in-memory broker and presence (single node; set REDIS_URL for several)"
    realtime = Realtime(broker=broker, store=store, history=history, config=config,
                        session_live=session_live, observer=observer, metrics=metrics)
    await realtime.start()
    stack.push_async_callback(realtime.close)
    return realtime

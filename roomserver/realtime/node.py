"""This node's realtime service: durable-first frame handling over history, broker, hub
and presence, plus the background loops that keep a node honest.

Contracts:
- A durable frame is written (history), THEN published; its ack is built only after the
  commit. If the publish fails the frame is still delivered locally, and other nodes
  repair from Postgres (hub gap repair, `sweep`).
- `sweep` (every `sweep_interval`): one query for the current seq of every room with
  local members; a room whose hub lags the seq seen at the previous sweep is repaired
  from history, so a lone last event whose publish was lost is not stranded.
- Presence: joins are published when the user was absent; leaves are published after
  the tracker's grace; every `presence_interval` each node diffs the shared store per
  local room and announces (locally) users that vanished without a notice (a crashed
  node: reason `timeout`). `PresenceFilter` drops duplicate join/leave notices.
- Kicks travel as `user_left {reason: kicked}` on the room's presence channel; every node
  closes the kicked user's local sockets with CloseCode.KICKED.
- Sessions: every `session_recheck` seconds and on a `session_revoked` notice on
  `global:notifications`, sockets of revoked or expired sessions close with SESSION_REVOKED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from roomserver import errors
from roomserver.achievements import Achievements
from roomserver.config import Settings
from roomserver.errors import CloseCode
from roomserver.identity.sessions import SessionStore
from roomserver.protocol import (
    Achievement,
    AchievementEarned,
    Ack,
    ChatMessage,
    DocumentShare,
    HighlightCreate,
    Kick,
    Member,
    MessageDelete,
    MessagePin,
    Notification,
    Ping,
    Pong,
    ReactionAdd,
    ReactionRemove,
    SocraticCancel,
    SocraticQuery,
    TypingStart,
    TypingStatus,
    TypingStop,
    UserJoined,
    UserLeft,
    encode,
)
from roomserver.ratelimit import RateLimiter
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
from roomserver.realtime.history import Author, History, RowWriter, Written
from roomserver.realtime.hub import Connection, Hub
from roomserver.realtime.presence import MemoryPresence, Presence, PresenceTracker, RedisPresence
from roomserver.rooms import RoomService
from roomserver.values import as_uuid

log = logging.getLogger(__name__)

MODERATORS = ("owner", "moderator")
FIRSTS: dict[type, str] = {ChatMessage: "first_message", HighlightCreate: "first_highlight"}
"""Achievements a durable socket frame can earn."""
REMOVALS = {
    "kicked": (CloseCode.KICKED, "kicked by a moderator"),
    "no_longer_qualifies": (CloseCode.NO_LONGER_QUALIFIES, "no longer meets the room's token/NFT gate"),
}
"""`user_left` reasons that close the user's sockets on every node, with their close code."""


@dataclass
class Caller:
    """One authenticated socket's identity in its room."""

    room_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID
    username: str | None
    wallet_address: str
    role: str

    @property
    def member(self) -> Member:
        return Member(user_id=str(self.user_id), username=self.username,
                      wallet_address=self.wallet_address, role=self.role)


HighlightCheck = Callable[[Caller, HighlightCreate], Awaitable[RowWriter]]
"""(caller, frame) -> the writer of the highlight's row, run inside the room's durable write;
raises a typed error to refuse. The library's one highlight validation (the same as REST's:
text in the ingested pages, document ready and shared to the room or public; the writer also
audits) plugs in here; without it `highlight_create` is refused."""
DocumentPolicy = Callable[[Caller, uuid.UUID], Awaitable[str | None]]
"""(caller, document_id) -> the document's title; raises a typed error to refuse. The library
plugs its permission check in here (`share_policy` also grants the room read access); the
default only checks that the document exists."""
TutorHandler = Callable[[Caller, SocraticQuery | SocraticCancel], Awaitable[str | None]]
FrameObserver = Callable[[str, str, str, dict[str, Any]], None]
"""(room_id, user_id, type, fields) for each join, leave and accepted client frame; the opt-in
traffic recorder (roomserver/realtime/recorder.py, RECORD_ROOMS) plugs in here. Must not raise or block."""
"""Answers socratic frames (streams through the broker); returns an optional reply frame."""


@dataclass(frozen=True)
class RealtimeConfig:
    recovery_window: int = 1000
    presence_ttl: float = 60.0
    leave_grace: float = 3.0
    presence_interval: float = 1.0
    sweep_interval: float = 2.0
    session_recheck: float = 30.0
    chat_per_minute: int = 120
    typing_per_minute: int = 120

    @classmethod
    def from_settings(cls, s: Settings) -> RealtimeConfig:
        return cls(recovery_window=s.ws_recovery_window, presence_ttl=float(s.presence_ttl_seconds),
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
    def __init__(self, *, broker: Broker, store: Presence, history: History, rooms: RoomService,
                 sessions: SessionStore, config: RealtimeConfig, node_id: str | None = None) -> None:
        self.config, self.history, self.rooms, self.sessions = config, history, rooms, sessions
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.raw_broker = broker
        self.broker = PresenceFilter(broker, self._on_presence)
        self.hub = Hub(self.broker, fetch_range=history.fetch_range, current_seq=history.current_seq)
        self.store = store
        self.tracker = PresenceTracker(store, self.node_id, leave_grace=config.leave_grace,
                                       on_leave=self._announce_leave)
        self.chat_limiter = RateLimiter(config.chat_per_minute / 60, max(5, config.chat_per_minute // 6))
        self.typing_limiter = RateLimiter(config.typing_per_minute / 60,
                                          max(5, config.typing_per_minute // 6))
        self.highlight_check: HighlightCheck | None = None
        self.share_policy: DocumentPolicy = self._document_exists
        self.tutor: TutorHandler | None = None
        self.frame_observer: FrameObserver | None = None
        self.achievements: Achievements | None = None
        self._local: dict[str, dict[Connection, Caller]] = {}
        self._seen: dict[str, set[str]] = {}  # room -> users announced present here
        self._lagging: dict[str, int] = {}
        self._present_before: dict[str, set[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[None]] = set()

    # ---- lifecycle ----

    async def start(self) -> None:
        await self.broker.start()
        await self.raw_broker.subscribe(GLOBAL_NOTIFICATIONS, self._on_notification)
        loops: list[tuple[str, float, Callable[[], Awaitable[None]]]] = [
            ("heartbeat", self.config.presence_ttl / 3, self.tracker.heartbeat),
            ("presence-diff", self.config.presence_interval, self.diff_presence),
            ("sweep", self.config.sweep_interval, self.sweep),
            ("session-recheck", self.config.session_recheck, self.recheck_sessions),
        ]
        for name, every, step in loops:
            self._tasks.append(asyncio.create_task(self._every(name, every, step), name=name))

    async def close(self) -> None:
        """Graceful stop: tell every socket to reconnect elsewhere, drop presence, stop loops."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.hub.close_all(CloseCode.SHUTDOWN, "server shutting down; reconnect and resume")
        await self.tracker.close()
        await self.hub.close()
        await self.broker.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def health(self) -> dict[str, Any]:
        """For /health: red while the broker's subscriber is down."""
        return {"ok": self.broker.healthy,
                "detail": {"node": self.node_id, "local_rooms": len(self._local),
                           "outages": getattr(self.raw_broker, "outages", 0)}}

    @staticmethod
    async def _every(name: str, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except Exception:
                log.exception("realtime loop %s failed; retrying next round", name)

    # ---- local connections ----

    async def attach(self, conn: Connection, caller: Caller) -> tuple[int, list[dict[str, Any]]]:
        """Join the hub and presence; returns (seq delivered so far, presence snapshot)."""
        room = str(caller.room_id)
        self._local.setdefault(room, {})[conn] = caller
        await self.hub.join(conn)
        seq = self.hub.last_seq(room) or 0
        info = caller.member.model_dump(exclude_none=True)
        self._observe(caller, "join", {})
        first_here = room not in self._seen
        seen = self._seen.setdefault(room, set())
        try:
            announce = await self.tracker.connect(room, info)
            if announce:
                await self._publish_presence(room, encode(UserJoined(room_id=room, user=caller.member)))
            members = await self.store.members(room)
        except Exception as exc:  # presence is best effort: a Redis hiccup must not refuse the room
            log.warning("presence unavailable for room %s (%s); joining without it", room, exc)
            announce, members = False, [info]
        if first_here:  # the others already present; our own join arrives as a notice
            seen.update(str(m["user_id"]) for m in members
                        if not (announce and m["user_id"] == str(caller.user_id)))
        return seq, members

    async def detach(self, conn: Connection, caller: Caller) -> None:
        room = str(caller.room_id)
        conns = self._local.get(room, {})
        if conns.pop(conn, None) is None:
            return
        self._observe(caller, "leave", {})
        if not conns:
            self._local.pop(room, None)
            self._lagging.pop(room, None)
        await self.hub.leave(conn)
        await self.tracker.disconnect(room, str(caller.user_id))
        if room not in self._local:
            self._seen.pop(room, None)
            self._present_before.pop(room, None)

    def connections(self, room_id: str, user_id: str | None = None) -> list[Connection]:
        conns = self._local.get(room_id, {})
        return [c for c, who in conns.items() if user_id is None or str(who.user_id) == user_id]

    def _observe(self, caller: Caller, kind: str, fields: dict[str, Any]) -> None:
        if self.frame_observer is not None:
            try:
                self.frame_observer(str(caller.room_id), str(caller.user_id), kind, fields)
            except Exception:
                log.exception("frame observer failed; frame handled anyway")

    # ---- frames ----

    async def handle(self, caller: Caller, frame: Any) -> str | None:
        """Carry out one decoded client frame; returns the encoded reply (ack, pong) or None.
        Raises typed errors for refusals."""
        self._observe(caller, frame.type, frame.model_dump(exclude_none=True) if self.frame_observer else {})
        if isinstance(frame, Ping):
            return encode(Pong())
        if isinstance(frame, TypingStart | TypingStop):
            self.typing_limiter.check(str(caller.user_id))
            await self._typing(caller, isinstance(frame, TypingStart))
            return None
        if isinstance(frame, SocraticQuery | SocraticCancel):
            if self.tutor is None:
                raise errors.Unavailable("the tutor is not available yet", code="tutor_unavailable")
            return await self.tutor(caller, frame)
        self.chat_limiter.check(str(caller.user_id))
        if isinstance(frame, Kick):
            await self._kick(caller, frame)
            return self._ack(frame.client_msg_id, None)
        written = await self._durable(caller, frame)
        if written.frame is not None:
            await self.publish_event(str(caller.room_id), frame_channel(frame, caller.room_id),
                                     written.frame)
            code = FIRSTS.get(type(frame))
            if code is not None and self.achievements is not None:
                await self.achievements.award(caller.user_id, code, caller.room_id)
        return self._ack(frame.client_msg_id, written)

    async def _durable(self, caller: Caller, frame: Any) -> Written:
        author = Author(caller.user_id, caller.username)
        room = caller.room_id
        if isinstance(frame, ChatMessage):
            return await self.history.post_message(room, author, frame.text, reply_to=frame.reply_to,
                                                   client_msg_id=frame.client_msg_id)
        if isinstance(frame, DocumentShare):
            doc = as_uuid(frame.document_id, "document_not_found", "document")
            title = await self.share_policy(caller, doc)
            return await self.history.share_document(room, author, doc, title, frame.note,
                                                     frame.client_msg_id)
        if isinstance(frame, HighlightCreate):
            if self.highlight_check is None:
                raise errors.Unavailable("highlights are not available", code="highlights_unavailable")
            write_row = await self.highlight_check(caller, frame)
            return await self.history.create_highlight(room, caller.user_id, write_row,
                                                       frame.client_msg_id)
        if isinstance(frame, ReactionAdd | ReactionRemove):
            return await self.history.react(room, caller.user_id, frame.message_id, frame.emoji,
                                            isinstance(frame, ReactionAdd))
        if isinstance(frame, MessageDelete):
            sender = await self.history.message_author(room, frame.message_id)
            if sender != caller.user_id:
                await self._require_moderator(caller)
            return await self.history.moderate(room, caller.user_id, frame.message_id, deleted=True)
        if isinstance(frame, MessagePin):
            await self._require_moderator(caller)
            return await self.history.moderate(room, caller.user_id, frame.message_id,
                                               pinned=frame.pinned)
        raise errors.BadRequest(f"{frame.type} is not accepted in a room", code="unexpected_frame")

    @staticmethod
    def _ack(client_msg_id: str | None, written: Written | None) -> str | None:
        if client_msg_id is None:
            return None
        if written is None:
            return encode(Ack(client_msg_id=client_msg_id))
        return encode(Ack(client_msg_id=client_msg_id, seq=written.seq, message_id=written.message_id))

    async def _document_exists(self, caller: Caller, document_id: uuid.UUID) -> str | None:
        title = await self.history.document_exists(document_id)
        if title is None:
            raise errors.NotFound("no such document", code="document_not_found")
        return title

    async def _require_moderator(self, caller: Caller) -> str:
        member = await self.rooms.membership(caller.room_id, caller.user_id)
        if member is None or member.role not in MODERATORS:
            raise errors.Forbidden("only the room's owner or a moderator can do this",
                                   code="not_moderator")
        return member.role

    async def _kick(self, caller: Caller, frame: Kick) -> None:
        role = await self._require_moderator(caller)
        target_id = as_uuid(frame.user_id, "participant_not_found", "participant")
        if target_id == caller.user_id:
            raise errors.Conflict("you cannot kick yourself", code="self_moderation")
        target = await self.rooms.membership(caller.room_id, target_id)
        if target is None:
            raise errors.NotFound("that user is not a member of this room",
                                  code="participant_not_found")
        if target.role == "owner" or (target.role == "moderator" and role != "owner"):
            raise errors.Forbidden("you cannot kick this member", code="owner_protected")
        room = str(caller.room_id)
        notice = UserLeft(room_id=room, user_id=str(target_id), reason="kicked")
        await self._publish_presence(room, encode(notice))

    async def _typing(self, caller: Caller, typing: bool) -> None:
        room = str(caller.room_id)
        await self.store.set_typing(room, str(caller.user_id), typing)
        status = TypingStatus(room_id=room, user_id=str(caller.user_id), typing=typing)
        await self._publish_presence(room, encode(status))

    # ---- publishing ----

    async def publish_event(self, room_id: str, channel: str, text: str) -> None:
        """Publish a committed event; if the broker cannot, deliver it locally (other nodes
        repair from history)."""
        try:
            await self.broker.publish(channel, text)
        except Exception as exc:
            log.warning("publish to %s failed (%s); delivering locally", channel, exc)
            self.hub.receive(room_id, text)
            return
        if isinstance(self.raw_broker, RedisBroker) and not self.raw_broker.healthy:
            self.hub.receive(room_id, text)  # our subscriber is down: do not wait for repair

    async def _publish_presence(self, room_id: str, text: str) -> None:
        try:
            await self.broker.publish(room_presence(room_id), text)
        except Exception as exc:
            log.warning("presence publish for room %s failed: %s", room_id, exc)
            if self._on_presence(room_presence(room_id), text.encode()):
                self.hub.deliver(room_id, text)

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
            removal = REMOVALS.get(str(head.get("reason")))
            if removal is not None:
                for conn in self.connections(room, user):
                    self._spawn(self._close_removed(conn, room, user, removal))
            if user not in seen:
                return False
            seen.discard(user)
        return True

    async def _close_removed(self, conn: Connection, room: str, user: str,
                             removal: tuple[CloseCode, str]) -> None:
        await self.hub.disconnect(conn, *removal)
        with contextlib.suppress(Exception):  # leave now, skipping the reconnect grace
            await self.store.remove(room, user, self.node_id)

    async def _announce_leave(self, room_id: str, user_id: str) -> None:
        await self._publish_presence(room_id, encode(UserLeft(room_id=room_id, user_id=user_id,
                                                              reason="left")))

    async def diff_presence(self) -> None:
        """Announce locally the users that vanished from a local room without a notice."""
        for room in list(self._local):
            present = {str(m["user_id"]) for m in await self.store.members(room)}
            seen = self._seen.setdefault(room, set())
            for user in sorted(seen - present):
                seen.discard(user)
                self.hub.deliver(room, encode(UserLeft(room_id=room, user_id=user, reason="timeout")))
            seen |= present & self._present_before.get(room, set())  # a join notice we missed
            self._present_before[room] = present

    # ---- repair and sessions ----

    async def sweep(self) -> None:
        """Repair rooms whose hub lags the seq seen in Postgres at the previous sweep."""
        rooms = list(self._local)
        if not rooms:
            return
        current = await self.history.current_seqs(rooms)
        for room in rooms:
            delivered = self.hub.last_seq(room)
            target = self._lagging.get(room, 0)
            if delivered is not None and delivered < target:
                log.info("sweep: room %s delivered %d < %d; repairing", room, delivered, target)
                for _, text in await self.history.fetch_range(room, delivered, target):
                    self.hub.receive(room, text)
            self._lagging[room] = current.get(room, 0)

    async def recheck_sessions(self) -> None:
        by_session: dict[uuid.UUID, list[Connection]] = {}
        for conns in self._local.values():
            for conn, caller in conns.items():
                by_session.setdefault(caller.session_id, []).append(conn)
        for session_id, session_conns in by_session.items():
            if not await self.sessions.is_live(session_id):
                await self._close_session(session_conns)

    async def _close_session(self, conns: list[Connection]) -> None:
        for conn in conns:
            await self.hub.disconnect(conn, CloseCode.SESSION_REVOKED, "session revoked or expired")

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

    # ---- events from the REST side (library, highlights, NFTs) ----

    async def announce(self, room_id: uuid.UUID, text: str, metadata: dict[str, Any]) -> None:
        """A durable system message in the room (e.g. a minted NFT)."""
        written = await self.history.post_system(room_id, text, metadata)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_messages(str(room_id)), written.frame)

    async def post_tutor(self, room_id: uuid.UUID, asker_id: uuid.UUID, text: str,
                         metadata: dict[str, Any]) -> Written:
        """The tutor's final answer as a durable message (`History.post_tutor`), published
        after the commit like any chat message."""
        written = await self.history.post_tutor(room_id, asker_id, text, metadata)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_messages(str(room_id)), written.frame)
        return written

    async def document_shared(self, room_id: uuid.UUID, document: dict[str, Any],
                              actor_id: uuid.UUID) -> None:
        """`document_shared` on `room:{id}:documents` for a share made over REST."""
        doc_id = uuid.UUID(str(document["document_id"]))
        written = await self.history.share_document(room_id, Author(actor_id, None), doc_id,
                                                    document.get("title"), None, None)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_documents(str(room_id)), written.frame)

    async def highlight_created(self, room_id: uuid.UUID, actor_id: uuid.UUID,
                                write_row: RowWriter) -> None:
        """A highlight made over REST: its row (`write_row`) and `highlight_created` in one
        durable write, then published."""
        written = await self.history.create_highlight(room_id, actor_id, write_row)
        if written.frame is not None:
            await self.publish_event(str(room_id), room_documents(str(room_id)), written.frame)

    async def announce_achievement(self, user_id: uuid.UUID, room_id: uuid.UUID | None,
                                   achievement: Achievement) -> None:
        """`achievement_earned` to the room it was earned in (everyone sees it), or to the
        user alone as a `notification` when it was earned outside a room."""
        frame = AchievementEarned(user_id=str(user_id), achievement=achievement)
        if room_id is None:
            await self.notify_user(user_id, frame.model_dump(mode="json", exclude_none=True))
            return
        with contextlib.suppress(Exception):  # best effort, like presence
            await self.broker.publish(room_messages(str(room_id)), encode(frame))

    async def notify_user(self, user_id: uuid.UUID, payload: dict[str, Any]) -> None:
        """A `notification` frame to every socket of this user, on every node."""
        note = orjson.dumps({"type": "user_notification", "user_id": str(user_id), "data": payload})
        try:
            await self.raw_broker.publish(GLOBAL_NOTIFICATIONS, note)
        except Exception as exc:  # progress notices are best effort; REST has the state
            log.warning("notification for user %s not published: %s", user_id, exc)

    def _notify_local(self, user_id: str, data: dict[str, Any]) -> None:
        kind = str(data.get("type", "notification"))
        text = encode(Notification(kind=kind, data=data))
        for conns in self._local.values():
            for conn, caller in conns.items():
                if str(caller.user_id) == user_id:
                    self.hub.send_to(conn, text)

    async def session_revoked(self, session_id: uuid.UUID) -> None:
        """Tell every node to close this session's sockets now (REST sign-out calls this)."""
        note = orjson.dumps({"type": "session_revoked", "session_id": str(session_id)})
        with contextlib.suppress(Exception):
            await self.raw_broker.publish(GLOBAL_NOTIFICATIONS, note)


def frame_channel(frame: Any, room_id: uuid.UUID) -> str:
    """The design's channel for a durable frame's event."""
    if isinstance(frame, DocumentShare | HighlightCreate):
        return room_documents(str(room_id))
    return room_messages(str(room_id))


async def open_realtime(settings: Settings, stack: AsyncExitStack, pool: asyncpg.Pool,
                        rooms: RoomService, sessions: SessionStore,
                        modes: dict[str, str]) -> Realtime:
    """Redis broker + presence with REDIS_URL, else in-memory (one node); started, and
    closed by `stack` (graceful: sockets are told to reconnect)."""
    config = RealtimeConfig.from_settings(settings)
    broker: Broker
    store: Presence
    if settings.redis_url:
        broker = RedisBroker(settings.redis_url)
        client = redis_client(settings.redis_url)
        stack.push_async_callback(client.aclose)
        store = RedisPresence(client, ttl=config.presence_ttl)
        modes["redis"] = f"Redis pub/sub + presence at {_redact(settings.redis_url)}"
    else:
        broker, store = MemoryBroker(), MemoryPresence(ttl=config.presence_ttl)
        modes["redis"] = "in-memory broker and presence (single node; set REDIS_URL for several)"
    realtime = Realtime(broker=broker, store=store, history=History(pool), rooms=rooms,
                        sessions=sessions, config=config)
    await realtime.start()
    stack.push_async_callback(realtime.close)
    return realtime


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"

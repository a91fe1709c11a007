"""Per-room ordered history: durable writes with the next room `seq`, and range reads.

Every durable event is written in ONE transaction that (1) bumps `study_rooms.last_seq`
(the row lock serialises a room's writers, so seqs commit in order and without gaps: a
rolled-back write gives its seq back), (2) writes the domain row (chat_messages,
message_reactions, highlights), (3) appends the encoded server frame to `room_events`.
The caller publishes the returned frame only after the commit (`Written.frame`).

Idempotency: a `client_msg_id` already used by the same sender in the room returns the
original write (`fresh=False`, nothing new is written or published). Checks run after
the room lock is taken, so two concurrent resends cannot both write.

All methods raise typed errors (`NotFound`, `Forbidden`, `BadRequest`) for bad input.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from roomserver import errors
from roomserver.achievements import Event, OnEvent, no_event
from roomserver.observe.metrics import Metrics
from roomserver.protocol import (
    DocumentShared,
    Frame,
    Highlight,
    HighlightCreated,
    Message,
    MessageUpdated,
    NewMessage,
    Position,
    ReactionUpdated,
)
from roomserver.values import as_uuid

log = logging.getLogger(__name__)

RowWriter = Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]]
"""Writes a domain row inside the event's transaction (its owner's code) and returns the
event's fields (see `create_highlight`)."""


@dataclass(frozen=True)
class Author:
    """Who writes: the user id and the name others see."""

    user_id: uuid.UUID
    username: str | None = None


@dataclass(frozen=True)
class Written:
    """The outcome of a durable write. `frame` (encoded once) is None when nothing new was
    written: a resend (`fresh=False`) or a no-op (e.g. adding a reaction twice)."""

    seq: int | None
    message_id: str | None
    frame: str | None
    fresh: bool


class _Rollback(Exception):
    """Raised inside a transaction to undo the seq bump; carries the answer to return."""

    def __init__(self, written: Written) -> None:
        self.written = written


_BUMP = "UPDATE study_rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq"
_BUMP_OPEN = "UPDATE study_rooms SET last_seq = last_seq + 1 WHERE id = $1 AND is_active RETURNING last_seq"
_IS_MEMBER = "SELECT 1 FROM room_participants WHERE room_id = $1 AND user_id = $2 AND is_member"


async def _no_seq(conn: asyncpg.Connection, room_id: uuid.UUID) -> errors.RoomserverError:
    """Why a seq bump matched no row: the room is closed, or there is no such room."""
    if await conn.fetchval("SELECT 1 FROM study_rooms WHERE id = $1", room_id):
        return errors.Forbidden("the room is closed", code="room_closed")
    return errors.NotFound("no such room", code="room_not_found")


def _not_member() -> errors.Forbidden:
    return errors.Forbidden("you are not a member of this room", code="not_member")


def _dump(frame: Frame) -> tuple[dict[str, Any], str]:
    data = frame.model_dump(mode="json", exclude_none=True)
    return data, orjson.dumps(data).decode()


class History:
    """Durable room events over one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, *, group_commit: bool = True,
                 on_event: OnEvent = no_event, metrics: Metrics | None = None) -> None:
        """`on_event` hears `message_posted` and `highlight_created` (author, room) after each
        new one commits; not for a resend answered with the original. Each transaction (one
        event, or one group-commit batch) is timed in `roomserver_durable_write_seconds`."""
        self._pool = pool
        self.write_seconds = (metrics or Metrics.unexposed()).durable_write
        self._on_event = on_event
        self._group = _GroupCommit(self) if group_commit else None

    # ---- reads ----

    async def current_seq(self, room_id: str) -> int:
        """The seq of the room's last durable event (0 for none or an unknown room)."""
        seq = await self._pool.fetchval("SELECT last_seq FROM study_rooms WHERE id = $1",
                                        as_uuid(room_id, "room_not_found", "room"))
        return int(seq or 0)

    async def current_seqs(self, room_ids: Sequence[str]) -> dict[str, int]:
        """`current_seq` of many rooms in one query."""
        rows = await self._pool.fetch("SELECT id, last_seq FROM study_rooms WHERE id = ANY($1)",
                                      [as_uuid(r, "room_not_found", "room") for r in room_ids])
        return {str(row["id"]): int(row["last_seq"]) for row in rows}

    async def fetch_range(self, room_id: str, after: int, up_to: int) -> list[tuple[int, str]]:
        """[(seq, encoded frame)] for after < seq <= up_to, in seq order."""
        rows = await self._pool.fetch(
            """SELECT seq, payload::text AS frame FROM room_events
               WHERE room_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq""",
            as_uuid(room_id, "room_not_found", "room"), after, up_to)
        return [(int(row["seq"]), row["frame"]) for row in rows]

    async def messages(self, room_id: uuid.UUID, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Chat messages with seq > after_seq, oldest first; deleted ones keep their place
        with empty text."""
        rows = await self._pool.fetch(
            """SELECT m.id, m.seq, m.sender_id, m.message_type, m.content, m.reply_to,
                      m.client_msg_id, m.created_at, m.is_pinned, m.is_deleted, m.reactions,
                      m.metadata, u.username
               FROM chat_messages m LEFT JOIN users u ON u.id = m.sender_id
               WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3""",
            room_id, after_seq, limit)
        return [_message_row(row) for row in rows]

    async def document_exists(self, document_id: uuid.UUID) -> str | None:
        """The document's title if it exists and is not deleted, else None."""
        row = await self._pool.fetchrow(
            "SELECT title FROM documents WHERE id = $1 AND deleted_at IS NULL AND status <> 'deleted'",
            document_id)
        return None if row is None else str(row["title"])

    # ---- writes ----

    async def _write(self, room_id: uuid.UUID,
                     body: Callable[[asyncpg.Connection, int], Awaitable[Written]], *,
                     member: uuid.UUID | None = None) -> Written:
        """Run `body(conn, seq)` in one transaction with the room's next seq. With `member`
        (a socket write) the room must be open and `member` a member of it, checked after the
        seq bump took the room row's lock, which every removal also takes first: a write that
        commits was admitted before the removal, one after it is refused (403 `room_closed`,
        `not_member`)."""
        try:
            with self.write_seconds.time():
                return await self._transaction(room_id, body, member)
        except _Rollback as undo:
            return undo.written

    async def _transaction(self, room_id: uuid.UUID,
                           body: Callable[[asyncpg.Connection, int], Awaitable[Written]],
                           member: uuid.UUID | None) -> Written:
        async with self._pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(_BUMP if member is None else _BUMP_OPEN, room_id)
            if seq is None:
                raise await _no_seq(conn, room_id)
            if member is not None and not await conn.fetchval(_IS_MEMBER, room_id, member):
                raise _not_member()
            return await body(conn, int(seq))

    @staticmethod
    async def _append(conn: asyncpg.Connection, room_id: uuid.UUID, seq: int, actor: uuid.UUID | None,
                      frame: Frame) -> str:
        data, text = _dump(frame)
        await conn.execute(
            """INSERT INTO room_events (room_id, seq, event_type, actor_id, payload)
               VALUES ($1, $2, $3, $4, $5)""", room_id, seq, data["type"], actor, data)
        return text

    @staticmethod
    async def _resent(conn: asyncpg.Connection, room_id: uuid.UUID, sender: uuid.UUID,
                      client_msg_id: str | None) -> None:
        if client_msg_id is None:
            return
        row = await conn.fetchrow(
            """SELECT id, seq FROM chat_messages
               WHERE room_id = $1 AND sender_id = $2 AND client_msg_id = $3""",
            room_id, sender, client_msg_id)
        if row is not None:
            raise _Rollback(Written(int(row["seq"]), str(row["id"]), None, False))

    async def post_message(self, room_id: uuid.UUID, author: Author, text: str, *,
                           reply_to: str | None = None, client_msg_id: str | None = None,
                           member: bool = False) -> Written:
        """A chat message (`new_message`). Plain messages are group-committed (see
        `_GroupCommit`); replies are written one at a time. `member`: the author must be a
        member of the open room (see `_write`)."""
        if reply_to is None and self._group is not None:
            written = await self._group.post(room_id, author, text, client_msg_id, member)
        else:
            written = await self._post_one(room_id, author, text, reply_to=reply_to,
                                           client_msg_id=client_msg_id, member=member)
        await self._report(written, "message_posted", author.user_id, room_id)
        return written

    async def _report(self, written: Written, event: Event, user_id: uuid.UUID,
                      room_id: uuid.UUID) -> None:
        if written.fresh and written.frame is not None:
            await self._on_event(event, user_id, room_id)

    async def _post_one(self, room_id: uuid.UUID, author: Author, text: str, *,
                        reply_to: str | None = None, client_msg_id: str | None = None,
                        member: bool = False) -> Written:
        reply_id = None if reply_to is None else as_uuid(reply_to, "message_not_found", "message")

        async def body(conn: asyncpg.Connection, seq: int) -> Written:
            await self._resent(conn, room_id, author.user_id, client_msg_id)
            if reply_id is not None and not await conn.fetchval(
                    "SELECT 1 FROM chat_messages WHERE id = $1 AND room_id = $2", reply_id, room_id):
                raise errors.NotFound("the message replied to is not in this room",
                                      code="message_not_found")
            row = await conn.fetchrow(
                """INSERT INTO chat_messages (room_id, seq, sender_id, content, reply_to, client_msg_id)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at""",
                room_id, seq, author.user_id, text, reply_id, client_msg_id)
            message = Message(id=str(row["id"]), user_id=str(author.user_id), text=text,
                              username=author.username, reply_to=reply_to,
                              client_msg_id=client_msg_id, created_at=row["created_at"].isoformat())
            frame = NewMessage(room_id=str(room_id), seq=seq, message=message)
            encoded = await self._append(conn, room_id, seq, author.user_id, frame)
            return Written(seq, message.id, encoded, True)

        return await self._write(room_id, body, member=author.user_id if member else None)

    async def share_document(self, room_id: uuid.UUID, author: Author, document_id: uuid.UUID,
                             title: str | None, note: str | None,
                             client_msg_id: str | None, *, member: bool = False) -> Written:
        """A document share: a chat message of kind `document_share` + `document_shared`.
        The caller has checked that the document exists and may be shared."""

        async def body(conn: asyncpg.Connection, seq: int) -> Written:
            await self._resent(conn, room_id, author.user_id, client_msg_id)
            row = await conn.fetchrow(
                """INSERT INTO chat_messages (room_id, seq, sender_id, message_type, content,
                       metadata, client_msg_id)
                   VALUES ($1, $2, $3, 'document_share', $4, $5, $6) RETURNING id""",
                room_id, seq, author.user_id, note or "",
                {"document_id": str(document_id), "title": title}, client_msg_id)
            frame = DocumentShared(room_id=str(room_id), seq=seq, document_id=str(document_id),
                                   shared_by=str(author.user_id), title=title, note=note,
                                   message_id=str(row["id"]))
            encoded = await self._append(conn, room_id, seq, author.user_id, frame)
            return Written(seq, str(row["id"]), encoded, True)

        return await self._write(room_id, body, member=author.user_id if member else None)

    async def create_highlight(self, room_id: uuid.UUID, actor_id: uuid.UUID, write_row: RowWriter,
                               client_msg_id: str | None = None, *, member: bool = False) -> Written:
        """A highlight and its `highlight_created`, one transaction: `write_row(conn)` is the
        library's writer of the checked highlight's row and audit (it returns the event's
        `highlight` fields). `message_id` of the answer is the highlight id. A
        `client_msg_id` this actor already used in the room returns the original."""

        async def body(conn: asyncpg.Connection, seq: int) -> Written:
            if client_msg_id is not None:
                row = await conn.fetchrow(
                    """SELECT seq, payload->'highlight'->>'id' AS id FROM room_events
                       WHERE room_id = $1 AND actor_id = $2 AND event_type = 'highlight_created'
                         AND payload->'highlight'->>'client_msg_id' = $3""",
                    room_id, actor_id, client_msg_id)
                if row is not None:
                    raise _Rollback(Written(int(row["seq"]), row["id"], None, False))
            fields = {k: v for k, v in (await write_row(conn)).items() if v is not None}
            if fields.get("position") is not None:
                fields["position"] = Position(**fields["position"])
            event = HighlightCreated(room_id=str(room_id), seq=seq, highlight=Highlight(**fields))
            encoded = await self._append(conn, room_id, seq, actor_id, event)
            return Written(seq, str(fields["id"]), encoded, True)

        written = await self._write(room_id, body, member=actor_id if member else None)
        await self._report(written, "highlight_created", actor_id, room_id)
        return written

    async def post_system(self, room_id: uuid.UUID, text: str, metadata: dict[str, Any]) -> Written:
        """A system message (`new_message` of kind `system`, no sender), e.g. a minted NFT."""

        async def body(conn: asyncpg.Connection, seq: int) -> Written:
            row = await conn.fetchrow(
                """INSERT INTO chat_messages (room_id, seq, sender_id, message_type, content, metadata)
                   VALUES ($1, $2, NULL, 'system', $3, $4) RETURNING id, created_at""",
                room_id, seq, text, metadata)
            message = Message(id=str(row["id"]), user_id="system", text=text, kind="system",
                              created_at=row["created_at"].isoformat(), metadata=metadata)
            frame = NewMessage(room_id=str(room_id), seq=seq, message=message)
            encoded = await self._append(conn, room_id, seq, None, frame)
            return Written(seq, message.id, encoded, True)

        return await self._write(room_id, body)

    async def post_tutor(self, room_id: uuid.UUID, asker_id: uuid.UUID, text: str,
                         metadata: dict[str, Any]) -> Written:
        """The tutor's stored answer: a `new_message` of kind `tutor` whose sender is the
        asker (`username` theirs), `metadata` the thread, mode, question and sources; the
        same row and event shape as a chat message."""

        async def body(conn: asyncpg.Connection, seq: int) -> Written:
            row = await conn.fetchrow(
                """INSERT INTO chat_messages (room_id, seq, sender_id, message_type, content, metadata)
                   VALUES ($1, $2, $3, 'tutor', $4, $5)
                   RETURNING id, created_at, (SELECT username FROM users WHERE id = $3) AS username""",
                room_id, seq, asker_id, text, metadata)
            message = Message(id=str(row["id"]), user_id=str(asker_id), text=text, kind="tutor",
                              username=row["username"], created_at=row["created_at"].isoformat(),
                              metadata=metadata)
            frame = NewMessage(room_id=str(room_id), seq=seq, message=message)
            encoded = await self._append(conn, room_id, seq, asker_id, frame)
            return Written(seq, message.id, encoded, True)

        return await self._write(room_id, body)

    async def react(self, room_id: uuid.UUID, user_id: uuid.UUID, message_id: str, emoji: str,
                    added: bool, *, member: bool = False) -> Written:
        """Add or remove one reaction (`reaction_updated` with the new counts); a no-op
        (adding twice, removing what is absent) writes nothing."""
        mid = as_uuid(message_id, "message_not_found", "message")

        async def body(conn: asyncpg.Connection, seq: int) -> Written:
            await self._live_message(conn, room_id, mid)
            if added:
                changed = await conn.fetchval(
                    """INSERT INTO message_reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)
                       ON CONFLICT DO NOTHING RETURNING 1""", mid, user_id, emoji)
            else:
                changed = await conn.fetchval(
                    """DELETE FROM message_reactions WHERE message_id = $1 AND user_id = $2
                       AND emoji = $3 RETURNING 1""", mid, user_id, emoji)
            if not changed:
                raise _Rollback(Written(None, message_id, None, False))
            rows = await conn.fetch(
                """SELECT emoji, count(*) AS n FROM message_reactions WHERE message_id = $1
                   GROUP BY emoji ORDER BY emoji""", mid)
            counts = {row["emoji"]: int(row["n"]) for row in rows}
            await conn.execute("UPDATE chat_messages SET reactions = $2 WHERE id = $1", mid, counts)
            frame = ReactionUpdated(room_id=str(room_id), seq=seq, message_id=str(mid), emoji=emoji,
                                    user_id=str(user_id), added=added, reactions=counts)
            encoded = await self._append(conn, room_id, seq, user_id, frame)
            return Written(seq, str(mid), encoded, True)

        return await self._write(room_id, body, member=user_id if member else None)

    async def message_author(self, room_id: uuid.UUID, message_id: str) -> uuid.UUID | None:
        """The sender of a live message of the room; 404 `message_not_found` otherwise."""
        mid = as_uuid(message_id, "message_not_found", "message")
        row = await self._pool.fetchrow(
            "SELECT sender_id FROM chat_messages WHERE id = $1 AND room_id = $2 AND NOT is_deleted",
            mid, room_id)
        if row is None:
            raise errors.NotFound("no such message in this room", code="message_not_found")
        return row["sender_id"]  # type: ignore[no-any-return]

    async def moderate(self, room_id: uuid.UUID, actor_id: uuid.UUID, message_id: str, *,
                       deleted: bool | None = None, pinned: bool | None = None,
                       member: bool = False) -> Written:
        """Delete (soft) or pin/unpin a message (`message_updated`); a no-op writes nothing.
        A delete also blanks the message's own event in the same transaction (`_blank_event`).
        The caller checks the actor's right to do it."""
        mid = as_uuid(message_id, "message_not_found", "message")

        async def body(conn: asyncpg.Connection, seq: int) -> Written:
            current = await self._live_message(conn, room_id, mid)
            if deleted:
                await conn.execute(
                    """UPDATE chat_messages SET is_deleted = true, deleted_by = $2,
                       deleted_at = now() WHERE id = $1""", mid, actor_id)
                await self._blank_event(conn, room_id, int(current["seq"]))
            elif pinned is not None and pinned != current["is_pinned"]:
                await conn.execute("UPDATE chat_messages SET is_pinned = $2 WHERE id = $1", mid, pinned)
            else:
                raise _Rollback(Written(None, message_id, None, False))
            frame = MessageUpdated(room_id=str(room_id), seq=seq, message_id=str(mid),
                                   by=str(actor_id), deleted=deleted, pinned=pinned)
            encoded = await self._append(conn, room_id, seq, actor_id, frame)
            return Written(seq, str(mid), encoded, True)

        return await self._write(room_id, body, member=actor_id if member else None)

    @staticmethod
    async def _blank_event(conn: asyncpg.Connection, room_id: uuid.UUID, seq: int) -> None:
        """Rewrite a deleted message's own event (a message and its event share the seq) so
        `resume` replays it without what was said: `new_message` keeps its place with empty
        text, `deleted: true` and no metadata; `document_shared` loses its note."""
        await conn.execute(
            """UPDATE room_events SET payload = CASE event_type
                   WHEN 'new_message' THEN jsonb_set(jsonb_set(payload #- '{message,metadata}',
                        '{message,text}', '""'), '{message,deleted}', 'true')
                   WHEN 'document_shared' THEN payload - 'note'
                   ELSE payload END
               WHERE room_id = $1 AND seq = $2""", room_id, seq)

    @staticmethod
    async def _live_message(conn: asyncpg.Connection, room_id: uuid.UUID,
                            mid: uuid.UUID) -> asyncpg.Record:
        row = await conn.fetchrow(
            """SELECT seq, is_pinned FROM chat_messages WHERE id = $1 AND room_id = $2
               AND NOT is_deleted FOR UPDATE""", mid, room_id)
        if row is None:
            raise errors.NotFound("no such message in this room", code="message_not_found")
        return row


def _message_row(row: asyncpg.Record) -> dict[str, Any]:
    deleted = bool(row["is_deleted"])
    return {
        "id": str(row["id"]), "seq": int(row["seq"]),
        "user_id": None if row["sender_id"] is None else str(row["sender_id"]),
        "username": row["username"], "kind": row["message_type"],
        "text": "" if deleted else row["content"],
        "reply_to": None if row["reply_to"] is None else str(row["reply_to"]),
        "client_msg_id": row["client_msg_id"], "created_at": row["created_at"].isoformat(),
        "pinned": bool(row["is_pinned"]), "deleted": deleted,
        "reactions": row["reactions"] or {}, "metadata": {} if deleted else (row["metadata"] or {}),
    }


@dataclass
class _Pending:
    room_id: uuid.UUID
    author: Author
    text: str
    client_msg_id: str | None
    member: bool
    future: asyncio.Future[Written]


class _Resent(Exception):
    """A batch met an already written idempotency key: it is undone and retried one by one."""


class _GroupCommit:
    """Group commit of plain chat messages: the messages posted while one batch is being
    written go into the next batch, ONE transaction for all of them (several rooms).

    Same guarantees as one transaction per message: the room rows are locked (in id order,
    so concurrent batches of other processes do not deadlock) while each room's seqs are
    bumped by its count of messages (gap-free), the messages and their `room_events` are
    inserted, the idempotency index refuses resends, and every caller gets its `Written` only
    after the COMMIT (durability before ack and publish). If the batch fails for any reason
    (a resend, a check violation, an unknown room), nothing of it is kept and each message is
    retried alone, so one bad message fails only its own caller."""

    MAX_BATCH = 128

    def __init__(self, history: History) -> None:
        self._history = history
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._conn: Any = None

    async def post(self, room_id: uuid.UUID, author: Author, text: str,
                   client_msg_id: str | None, member: bool = False) -> Written:
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(room_id, author, text, client_msg_id, member, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._run())
        return await asyncio.shield(future)  # a cancelled caller must not cancel the batch

    async def _connection(self) -> Any:
        """The writer's pooled connection, kept while batches follow each other (no acquire
        and no reset query per batch); given back when the queue is empty or a batch fails,
        so the pool can always close."""
        if self._conn is None:
            self._conn = await self._history._pool.acquire()
        return self._conn

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._history._pool.release(conn)
            except Exception:  # a broken connection: the pool replaces it
                log.debug("group-commit connection not released cleanly", exc_info=True)

    async def _run(self) -> None:
        try:
            await self._batches()
        except BaseException:  # cancelled (shutdown): the pool must get its connection back
            await self._give_back()
            raise

    async def _batches(self) -> None:
        while True:
            while self._queue:
                batch, self._queue = self._queue[:self.MAX_BATCH], self._queue[self.MAX_BATCH:]
                try:
                    with self._history.write_seconds.time():
                        results = await self._write(batch)
                except Exception:
                    await self._give_back()
                    for item in batch:
                        await self._alone(item)
                    continue
                for item, written in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(written)
                if not self._queue:
                    await asyncio.sleep(0)  # callers woken by this batch may post the next one
            await self._give_back()
            if not self._queue:  # no await since the check: a later post starts a new writer
                return

    async def _alone(self, item: _Pending) -> None:
        try:
            written = await self._history._post_one(item.room_id, item.author, item.text,
                                                    client_msg_id=item.client_msg_id,
                                                    member=item.member)
        except BaseException as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not item.future.done():
                item.future.set_result(written)

    async def _write(self, batch: list[_Pending]) -> list[Written]:
        """Four round trips for the whole batch: BEGIN, bump + lock, insert, COMMIT.

        The UPDATE locks the rooms (in id order: the sorted input drives the nested loop) and
        reserves each room's seqs; resends are caught by the idempotency index (ON CONFLICT
        DO NOTHING), and a socket message (`member`) whose author is no longer a member of the
        open room by the INSERT's condition (a later statement than the lock: it sees any
        removal that committed first): if any row was not inserted the batch raises, rolls back
        (seqs given back) and `_run` retries each message alone, which answers a resend as
        before and refuses a removed author with a typed error."""
        answers: list[Written | None] = [None] * len(batch)
        first: dict[tuple[uuid.UUID, uuid.UUID, str], int] = {}
        resend_of: dict[int, int] = {}
        for i, item in enumerate(batch):
            if item.client_msg_id is not None:
                key = (item.room_id, item.author.user_id, item.client_msg_id)
                if key in first:
                    resend_of[i] = first[key]  # a resend of an earlier message of this batch
                else:
                    first[key] = i
        fresh = [i for i in range(len(batch)) if i not in resend_of]
        counts: dict[uuid.UUID, int] = {}
        for i in fresh:
            counts[batch[i].room_id] = counts.get(batch[i].room_id, 0) + 1
        rooms = sorted(counts)
        conn = await self._connection()
        async with conn.transaction():
            bumped = await conn.fetch(
                """UPDATE study_rooms s SET last_seq = s.last_seq + d.n
                   FROM (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS u(id, n) ORDER BY id) AS d
                   WHERE s.id = d.id RETURNING s.id, s.last_seq, now() AS ts""",
                rooms, [counts[r] for r in rooms])
            if len(bumped) != len(rooms):
                raise errors.NotFound("no such room", code="room_not_found")
            created_at = bumped[0]["ts"].isoformat()
            next_seq = {row["id"]: int(row["last_seq"]) - counts[row["id"]] + 1 for row in bumped}
            cols: list[list[Any]] = [[], [], [], [], [], [], [], []]
            for i in fresh:
                item = batch[i]
                seq = next_seq[item.room_id]
                next_seq[item.room_id] = seq + 1
                mid = uuid.uuid4()
                message = Message(id=str(mid), user_id=str(item.author.user_id), text=item.text,
                                  username=item.author.username,
                                  client_msg_id=item.client_msg_id, created_at=created_at)
                _, encoded = _dump(NewMessage(room_id=str(item.room_id), seq=seq, message=message))
                for col, value in zip(cols, (mid, item.room_id, seq, item.author.user_id, item.text,
                                             item.client_msg_id, encoded, item.member), strict=True):
                    col.append(value)
                answers[i] = Written(seq, str(mid), encoded, True)
            inserted = await conn.fetchval(
                """WITH m AS (
                       INSERT INTO chat_messages (id, room_id, seq, sender_id, content, client_msg_id)
                       SELECT i, r, s, a, c, k FROM unnest($1::uuid[], $2::uuid[], $3::bigint[],
                           $4::uuid[], $5::text[], $6::text[], $8::bool[]) AS x(i, r, s, a, c, k, strict)
                       WHERE NOT x.strict OR EXISTS (SELECT 1 FROM room_participants p
                           JOIN study_rooms o ON o.id = p.room_id
                           WHERE p.room_id = x.r AND p.user_id = x.a AND p.is_member AND o.is_active)
                       ON CONFLICT (room_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL
                       DO NOTHING RETURNING 1),
                   e AS (
                       INSERT INTO room_events (room_id, seq, event_type, actor_id, payload)
                       SELECT r, s, 'new_message', a, p::jsonb
                       FROM unnest($2::uuid[], $3::bigint[], $4::uuid[], $7::text[]) AS x(r, s, a, p))
                   SELECT count(*) FROM m""",
                *cols)
            if inserted != len(fresh):
                raise _Resent()
        out: list[Written] = []
        for i, answer in enumerate(answers):
            if answer is None:  # a resend of an earlier message of this batch
                original = answers[resend_of[i]]
                assert original is not None
                answer = Written(original.seq, original.message_id, None, False)
            out.append(answer)
        return out

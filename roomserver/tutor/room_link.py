"""The tutor plugged into a node's realtime service: frames to the room across nodes, the final
answer through the durable write path, and the handler for `socratic_query`/`socratic_cancel`.

- `emit`: publishes an encoded `socratic_response` on the room's messages channel, so every
  node's hub hands it to its members; it has no `seq` (not part of history). If the broker
  cannot take it, it goes to this node's members only.
- `store_final`: one transaction, like every durable event (history.py's contract): the next
  room seq, a chat message of kind `tutor` (sender: the asker; metadata: thread, mode,
  question, sources), and its `new_message` frame appended to `room_events`; then published.
  Late joiners and `resume` see it like any message.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

import asyncpg

from roomserver import errors
from roomserver.config import Settings
from roomserver.library.embeddings import Embedder
from roomserver.protocol import Message, NewMessage, SocraticCancel, SocraticQuery, encode
from roomserver.realtime.broker import room_messages
from roomserver.realtime.history import as_uuid
from roomserver.realtime.node import Caller, Realtime
from roomserver.tutor.service import Question, Stored, TutorService

MAX_MESSAGE_CHARS = 8000


class RoomLink:
    def __init__(self, realtime: Realtime, pool: asyncpg.Pool) -> None:
        self.realtime, self.pool = realtime, pool
        self.tutor: TutorService | None = None

    async def emit(self, room_id: uuid.UUID, text: str) -> None:
        room = str(room_id)
        try:
            await self.realtime.broker.publish(room_messages(room), text)
        except errors.Unavailable:
            self.realtime.hub.deliver(room, text)

    async def store_final(self, room_id: uuid.UUID, user_id: uuid.UUID, text: str,
                          metadata: dict[str, Any]) -> Stored:
        text = text[:MAX_MESSAGE_CHARS]
        async with self.pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(
                "UPDATE study_rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", room_id)
            if seq is None:
                raise errors.NotFound("no such room", code="room_not_found")
            row = await conn.fetchrow(
                """INSERT INTO chat_messages (room_id, seq, sender_id, message_type, content, metadata)
                   VALUES ($1, $2, $3, 'tutor', $4, $5)
                   RETURNING id, created_at, (SELECT username FROM users WHERE id = $3) AS username""",
                room_id, seq, user_id, text, metadata)
            message = Message(id=str(row["id"]), user_id=str(user_id), text=text, kind="tutor",
                              username=row["username"], created_at=row["created_at"].isoformat(),
                              metadata=metadata)  # type: ignore[call-arg]
            frame = NewMessage(room_id=str(room_id), seq=int(seq), message=message)
            data = frame.model_dump(mode="json", exclude_none=True)
            await conn.execute(
                """INSERT INTO room_events (room_id, seq, event_type, actor_id, payload)
                   VALUES ($1, $2, 'new_message', $3, $4)""", room_id, seq, user_id, data)
        await self.realtime.publish_event(str(room_id), room_messages(str(room_id)), encode(frame))
        return Stored(message.id, int(seq))

    async def handle(self, caller: Caller, frame: SocraticQuery | SocraticCancel) -> str | None:
        """The realtime service's `tutor` hook. Refusals raise typed errors (sent to the asker)."""
        if self.tutor is None:
            raise errors.Unavailable("the tutor is not available", code="tutor_unavailable")
        if isinstance(frame, SocraticCancel):
            if not self.tutor.cancel(caller.room_id, caller.user_id, frame.answer_id):
                raise errors.NotFound("you have no tutor answer running in this room",
                                      code="answer_not_found")
            return None
        thread = None if frame.thread_id is None else as_uuid(frame.thread_id, "thread_not_found", "thread")
        await self.tutor.ask(Question(caller.room_id, caller.user_id, frame.question, thread,
                                      frame.client_msg_id))
        return None


def open_tutor(settings: Settings, stack: AsyncExitStack, pool: asyncpg.Pool, embedder: Embedder,
               realtime: Realtime, modes: dict[str, str]) -> TutorService:
    """The tutor service wired to the room's realtime path; `stack` closes it (before realtime)."""
    link = RoomLink(realtime, pool)
    tutor = TutorService(settings, pool, embedder, emit=link.emit, store_final=link.store_final)
    link.tutor = tutor
    realtime.tutor = link.handle
    stack.push_async_callback(tutor.close)
    modes["tutor"] = (f"Claude ({settings.tutor_model}) at {settings.anthropic_base_url or 'api.anthropic.com'}"
                      if tutor.claude else "offline (no ANTHROPIC_API_KEY): retrieval-grounded Socratic flow")
    return tutor

"""The tutor plugged into a node's realtime service: frames to the room across nodes, the final
answer through the durable write path, and the handler for `socratic_query`/`socratic_cancel`.

- `emit`: the node's ephemeral emit (`Realtime.emit`): the encoded `socratic_response` reaches
  the room's members on every node; it has no `seq` (not part of history). If the broker
  cannot take it, it goes to this node's members only.
- `store_final`: the room's one durable writer (`History.post_tutor`, through the node): a
  chat message of kind `tutor` (sender: the asker; metadata: thread, mode, question,
  sources) and its `new_message` event, then published. Late joiners and `resume` see it
  exactly like a chat message. This module writes no SQL.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

import asyncpg

from roomserver import errors
from roomserver.config import Settings
from roomserver.library.embeddings import Embedder
from roomserver.observe.metrics import Metrics
from roomserver.observe.redact import redact_url
from roomserver.protocol import SocraticCancel, SocraticQuery
from roomserver.ratelimit import LimiterFactory, memory_limiters
from roomserver.realtime.frames import TutorHandler
from roomserver.realtime.node import Caller, Realtime
from roomserver.tutor.service import Question, Stored, TutorService
from roomserver.values import as_uuid

MAX_MESSAGE_CHARS = 8000


class RoomLink:
    def __init__(self, realtime: Realtime) -> None:
        self.realtime = realtime
        self.tutor: TutorService | None = None

    async def emit(self, room_id: uuid.UUID, text: str) -> None:
        await self.realtime.emit(str(room_id), text)

    async def store_final(self, room_id: uuid.UUID, user_id: uuid.UUID, text: str,
                          metadata: dict[str, Any]) -> Stored:
        written = await self.realtime.post_tutor(room_id, user_id, text[:MAX_MESSAGE_CHARS], metadata)
        assert written.seq is not None and written.message_id is not None  # a fresh write
        return Stored(written.message_id, written.seq)

    async def handle(self, caller: Caller, frame: SocraticQuery | SocraticCancel) -> str | None:
        """The frame dispatcher's `tutor` hook. Refusals raise typed errors (sent to the asker)."""
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


def open_tutor(settings: Settings, stack: AsyncExitStack, pool: asyncpg.Pool, embedder: Embedder | None,
               realtime: Realtime, modes: dict[str, str], *,
               limiters: LimiterFactory = memory_limiters,
               metrics: Metrics | None = None) -> tuple[TutorService, TutorHandler]:
    """The tutor service wired to the room's realtime path, and the frame handler to pass in
    the frame `Hooks`; `stack` closes the service (before realtime)."""
    link = RoomLink(realtime)
    tutor = TutorService(settings, pool, embedder, emit=link.emit, store_final=link.store_final,
                         limiters=limiters, metrics=metrics)
    link.tutor = tutor
    stack.push_async_callback(tutor.close)
    modes["tutor"] = (f"Claude ({settings.tutor_model}) at {redact_url(settings.anthropic_base_url) or 'api.anthropic.com'}"
                      if tutor.claude else "offline (no ANTHROPIC_API_KEY): retrieval-grounded Socratic flow")
    return tutor, link.handle

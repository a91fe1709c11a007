"""Frame dispatch: what each decoded client frame does in its room.

`Frames.handle(caller, frame)` is one `match` over the `ClientFrame` union ending in
`assert_never`, so a frame type added to the protocol fails type-checking until it is
handled here. Durable frames are written by `History` (as socket writes: the room must be open
and the writer a member when the write takes the room's lock) and published by the node only
after the commit; the reply (an `ack` with the seq, or `pong`) is returned to the edge. Refusals
raise typed errors (the edge sends them as `error` frames).

Policy comes in as `Hooks`, passed at construction: the document checks, the tutor and the
room's roles (achievements are earned through `History`'s event hook). This module imports no identity, gating, library,
NFT or tutor module.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import assert_never

from roomserver import errors
from roomserver.protocol import (
    Ack,
    Auth,
    ChatMessage,
    ClientFrame,
    DocumentShare,
    HighlightCreate,
    Kick,
    MessageDelete,
    MessagePin,
    Ping,
    Pong,
    ReactionAdd,
    ReactionRemove,
    Resume,
    SocraticCancel,
    SocraticQuery,
    TypingStart,
    TypingStop,
    encode,
)
from roomserver.ratelimit import LimiterFactory, memory_limiters
from roomserver.realtime.broker import room_documents, room_messages
from roomserver.realtime.history import Author, History, RowWriter, Written
from roomserver.realtime.node import Caller, Realtime
from roomserver.values import as_uuid

Durable = ChatMessage | DocumentShare | HighlightCreate | ReactionAdd | ReactionRemove | MessageDelete | MessagePin

DocumentPolicy = Callable[[Caller, uuid.UUID], Awaitable[str | None]]
"""(caller, document_id) -> the document's title; raises a typed error to refuse. The library
plugs its share check in here (it also grants the room read access); the default only checks
that the document exists."""
HighlightCheck = Callable[[Caller, HighlightCreate], Awaitable[RowWriter]]
"""(caller, frame) -> the writer of the highlight's row, run inside the room's durable write;
raises a typed error to refuse. The library's one highlight validation (the same as REST's:
text in the ingested pages, document ready and shared to the room or public; the writer also
audits) plugs in here; without it `highlight_create` is refused."""
TutorHandler = Callable[[Caller, SocraticQuery | SocraticCancel], Awaitable[str | None]]
"""Answers socratic frames (the answer streams through the node); returns an optional reply frame."""
IsModerator = Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]]
"""(room_id, user_id) -> whether the user moderates the room now (the roles live in rooms)."""
KickHandler = Callable[[uuid.UUID, uuid.UUID, uuid.UUID, str | None], Awaitable[None]]
"""(room_id, actor_id, target_id, reason): the rooms' removal policy and its one removal
operation (`RoomService.kick`); raises the typed refusal."""


@dataclass(frozen=True)
class Hooks:
    """Everything frame dispatch needs from other domains, fixed at construction."""

    is_moderator: IsModerator
    kick: KickHandler
    check_highlight: HighlightCheck | None = None
    may_share: DocumentPolicy | None = None
    tutor: TutorHandler | None = None


class Frames:
    def __init__(self, node: Realtime, history: History, hooks: Hooks, *,
                 limiters: LimiterFactory = memory_limiters) -> None:
        """`limiters` makes the per-user chat and typing buckets (shared in Redis by the app)."""
        self._node, self._history, self._hooks = node, history, hooks
        config = node.config
        self._chat_limiter = limiters("ws-chat", config.chat_per_minute / 60,
                                      max(5, config.chat_per_minute // 6))
        self._typing_limiter = limiters("ws-typing", config.typing_per_minute / 60,
                                        max(5, config.typing_per_minute // 6))

    async def handle(self, caller: Caller, frame: ClientFrame) -> str | None:
        """Carry out one decoded client frame; returns the encoded reply (ack, pong) or None.
        Raises typed errors for refusals. `resume` and `auth` belong to the edge. A caller
        removed from the room (the removal notice reached this node) gets only `pong`."""
        fields = frame.model_dump(exclude_none=True) if self._node.observing else {}
        self._node.observe(caller, frame.type, fields)
        if caller.removed is not None and not isinstance(frame, Ping):
            raise errors.Forbidden(f"you were removed from this room ({caller.removed})",
                                   code="removed_from_room")
        match frame:
            case Ping():
                return encode(Pong())
            case TypingStart() | TypingStop():
                await self._typing_limiter.hit(str(caller.user_id))
                await self._node.typing(caller, isinstance(frame, TypingStart))
                return None
            case SocraticQuery() | SocraticCancel():
                if self._hooks.tutor is None:
                    raise errors.Unavailable("the tutor is not available yet", code="tutor_unavailable")
                return await self._hooks.tutor(caller, frame)
            case Kick():
                await self._chat_limiter.hit(str(caller.user_id))
                await self._kick(caller, frame)
                return _ack(frame.client_msg_id, None)
            case (ChatMessage() | DocumentShare() | HighlightCreate() | ReactionAdd() | ReactionRemove()
                  | MessageDelete() | MessagePin()):
                await self._chat_limiter.hit(str(caller.user_id))
                return await self._durable(caller, frame)
            case Auth() | Resume():
                raise errors.BadRequest(f"{frame.type} is not accepted in a room", code="unexpected_frame")
            case _:
                assert_never(frame)

    async def _durable(self, caller: Caller, frame: Durable) -> str | None:
        written = await self._write(caller, frame)
        if written.frame is not None:
            await self._node.publish_event(str(caller.room_id), frame_channel(frame, caller.room_id),
                                           written.frame)
        return _ack(frame.client_msg_id, written)

    async def _write(self, caller: Caller, frame: Durable) -> Written:
        author = Author(caller.user_id, caller.username)
        room, history = caller.room_id, self._history
        match frame:
            case ChatMessage():
                return await history.post_message(room, author, frame.text, reply_to=frame.reply_to,
                                                  client_msg_id=frame.client_msg_id, member=True)
            case DocumentShare():
                doc = as_uuid(frame.document_id, "document_not_found", "document")
                title = await (self._hooks.may_share or self._document_exists)(caller, doc)
                return await history.share_document(room, author, doc, title, frame.note,
                                                    frame.client_msg_id, member=True)
            case HighlightCreate():
                if self._hooks.check_highlight is None:
                    raise errors.Unavailable("highlights are not available", code="highlights_unavailable")
                write_row = await self._hooks.check_highlight(caller, frame)
                return await history.create_highlight(room, caller.user_id, write_row,
                                                      frame.client_msg_id, member=True)
            case ReactionAdd() | ReactionRemove():
                return await history.react(room, caller.user_id, frame.message_id, frame.emoji,
                                           isinstance(frame, ReactionAdd), member=True)
            case MessageDelete():
                if await history.message_author(room, frame.message_id) != caller.user_id:
                    await self._require_moderator(caller)
                return await history.moderate(room, caller.user_id, frame.message_id, deleted=True,
                                              member=True)
            case MessagePin():
                await self._require_moderator(caller)
                return await history.moderate(room, caller.user_id, frame.message_id,
                                              pinned=frame.pinned, member=True)
            case _:
                assert_never(frame)

    async def _document_exists(self, caller: Caller, document_id: uuid.UUID) -> str | None:
        title = await self._history.document_exists(document_id)
        if title is None:
            raise errors.NotFound("no such document", code="document_not_found")
        return title

    async def _require_moderator(self, caller: Caller) -> None:
        if not await self._hooks.is_moderator(caller.room_id, caller.user_id):
            raise errors.Forbidden("only the room's owner or a moderator can do this",
                                   code="not_moderator")

    async def _kick(self, caller: Caller, frame: Kick) -> None:
        target_id = as_uuid(frame.user_id, "participant_not_found", "participant")
        await self._hooks.kick(caller.room_id, caller.user_id, target_id, frame.reason)


def _ack(client_msg_id: str | None, written: Written | None) -> str | None:
    if client_msg_id is None:
        return None
    if written is None:
        return encode(Ack(client_msg_id=client_msg_id))
    return encode(Ack(client_msg_id=client_msg_id, seq=written.seq, message_id=written.message_id))


def frame_channel(frame: Durable, room_id: uuid.UUID) -> str:
    """The design's channel for a durable frame's event."""
    if isinstance(frame, DocumentShare | HighlightCreate):
        return room_documents(str(room_id))
    return room_messages(str(room_id))

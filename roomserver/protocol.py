"""WebSocket frames of a room: pydantic models with a `type` discriminator. Pure, no I/O.

Wire contract (clients outside this repo depend on it; extend, never rename): every frame
is a JSON object with a `type`; durable events carry the room `seq` at the top level.
See docs/protocol.md for an example of every frame.

`decode_client(raw)` turns one received text/bytes frame into a `ClientFrame` or raises
`ProtocolError` (and nothing else). `encode(frame)` serialises a server frame once to `str`;
fan-out hands that same object to every socket.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, TypeVar, get_args

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from roomserver.errors import BadRequest

MAX_FRAME_BYTES = 64 * 1024
SUBPROTOCOL = "roomserver.v1"
BEARER_PREFIX = "bearer."

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ClientMsgId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ChatText = Annotated[str, StringConstraints(min_length=1, max_length=8000)]
ShortText = Annotated[str, StringConstraints(max_length=2000)]
Emoji = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]


class ProtocolError(BadRequest):
    """A frame the server cannot accept. `code` is one of `invalid_json`, `invalid_frame`,
    `unknown_type`, `frame_too_large`; `ref` echoes the frame's `client_msg_id` when known."""

    def __init__(self, code: str, message: str, ref: str | None = None):
        super().__init__(message, code=code, details={"ref": ref} if ref else None)
        self.ref = ref


class Frame(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ClientFrameBase(Frame):
    client_msg_id: ClientMsgId | None = None


# ---- incoming (client -> server) ----


class Auth(ClientFrameBase):
    type: Literal["auth"] = "auth"
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class ChatMessage(ClientFrameBase):
    type: Literal["chat_message"] = "chat_message"
    text: ChatText
    reply_to: Id | None = None


class TypingStart(ClientFrameBase):
    type: Literal["typing_start"] = "typing_start"


class TypingStop(ClientFrameBase):
    type: Literal["typing_stop"] = "typing_stop"


class DocumentShare(ClientFrameBase):
    type: Literal["document_share"] = "document_share"
    document_id: Id
    note: ShortText | None = None


class Position(Frame):
    """Where a highlight sits on its page (offsets in characters, or page coordinates)."""

    start: int | float | None = None
    end: int | float | None = None
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None


class HighlightCreate(ClientFrameBase):
    type: Literal["highlight_create"] = "highlight_create"
    document_id: Id
    text: ChatText
    context_before: ShortText | None = None
    context_after: ShortText | None = None
    page: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    position: Position | None = None


class ReactionAdd(ClientFrameBase):
    type: Literal["reaction_add"] = "reaction_add"
    message_id: Id
    emoji: Emoji


class ReactionRemove(ClientFrameBase):
    type: Literal["reaction_remove"] = "reaction_remove"
    message_id: Id
    emoji: Emoji


class SocraticQuery(ClientFrameBase):
    type: Literal["socratic_query"] = "socratic_query"
    question: ChatText
    thread_id: Id | None = None


class SocraticCancel(ClientFrameBase):
    """Cancel the sender's running tutor answers in this room: `answer_id`, or all of them."""

    type: Literal["socratic_cancel"] = "socratic_cancel"
    answer_id: Id | None = None


class Resume(ClientFrameBase):
    type: Literal["resume"] = "resume"
    last_seq: Seq


class Ping(ClientFrameBase):
    type: Literal["ping"] = "ping"


class MessageDelete(ClientFrameBase):
    type: Literal["message_delete"] = "message_delete"
    message_id: Id


class MessagePin(ClientFrameBase):
    type: Literal["message_pin"] = "message_pin"
    message_id: Id
    pinned: bool


class Kick(ClientFrameBase):
    type: Literal["kick"] = "kick"
    user_id: Id
    reason: ShortText | None = None


ClientFrame: TypeAlias = (
    Auth | ChatMessage | TypingStart | TypingStop | DocumentShare | HighlightCreate
    | ReactionAdd | ReactionRemove | SocraticQuery | SocraticCancel | Resume | Ping
    | MessageDelete | MessagePin | Kick
)
"""Every frame a client may send; `decode_client` returns one of them (match over it with
`typing.assert_never` so a new frame type fails type-checking until it is handled)."""

# ---- outgoing (server -> client) ----


class Member(Frame):
    """A user as others in the room see them."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    user_id: str
    username: str | None = None
    wallet_address: str | None = None
    role: str | None = None


class RoomInfo(Frame):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    id: str
    name: str | None = None
    room_type: str | None = None


class FocusState(Frame):
    """The room's focus timer (see docs/engagement.md "Focus timers"): sent on every change and
    when a phase boundary passes, never per second; clients count down to `ends_at`.
    `started_at` is when the current phase began (idle: when the room became idle);
    `ends_at` is null while paused or idle; `paused_remaining` (seconds) only while paused."""

    type: Literal["focus_state"] = "focus_state"
    phase: Literal["work", "break", "paused", "idle"]
    started_at: str
    ends_at: str | None
    paused_remaining: float | None
    cycle: int
    cycles: int
    room_id: str | None = None
    session_id: str | None = None

    @model_serializer(mode="wrap")
    def _with_nulls(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]  # no return type: the JSON schema stays the model's
        """`ends_at` and `paused_remaining` are on the wire even when null (the contract)."""
        data = handler(self)
        if isinstance(data, dict):
            data.setdefault("ends_at", self.ends_at)
            data.setdefault("paused_remaining", self.paused_remaining)
        return data


class Welcome(Frame):
    type: Literal["welcome"] = "welcome"
    you: Member
    room: RoomInfo
    presence: list[Member]
    seq: Seq
    """The room's current seq: the last durable event written."""
    focus: FocusState | None = None
    """The room's focus timer as `focus_state` would carry it."""


class Ack(Frame):
    type: Literal["ack"] = "ack"
    client_msg_id: str
    seq: Seq | None = None
    message_id: str | None = None


class Message(Frame):
    """A chat message as stored; `kind` is text, document_share, highlight or system."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    id: str
    user_id: str
    text: str
    kind: str = "text"
    username: str | None = None
    reply_to: str | None = None
    client_msg_id: str | None = None
    created_at: str | None = None
    pinned: bool = False
    deleted: bool = False


class NewMessage(Frame):
    type: Literal["new_message"] = "new_message"
    room_id: str
    seq: Seq
    message: Message


class UserJoined(Frame):
    type: Literal["user_joined"] = "user_joined"
    room_id: str
    user: Member


class UserLeft(Frame):
    type: Literal["user_left"] = "user_left"
    room_id: str
    user_id: str
    reason: str | None = None


class TypingStatus(Frame):
    type: Literal["typing_status"] = "typing_status"
    room_id: str
    user_id: str
    typing: bool


class DocumentShared(Frame):
    type: Literal["document_shared"] = "document_shared"
    room_id: str
    seq: Seq
    document_id: str
    shared_by: str
    title: str | None = None
    note: str | None = None
    message_id: str | None = None


class Highlight(Frame):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    id: str
    document_id: str
    user_id: str
    text: str
    context_before: str | None = None
    context_after: str | None = None
    page: int | None = None
    position: Position | None = None


class HighlightCreated(Frame):
    type: Literal["highlight_created"] = "highlight_created"
    room_id: str
    seq: Seq
    highlight: Highlight


class ReactionUpdated(Frame):
    type: Literal["reaction_updated"] = "reaction_updated"
    room_id: str
    seq: Seq
    message_id: str
    emoji: str
    user_id: str
    added: bool
    reactions: dict[str, int]
    """Counts per emoji on the message after this change."""


class MessageUpdated(Frame):
    type: Literal["message_updated"] = "message_updated"
    room_id: str
    seq: Seq
    message_id: str
    by: str
    deleted: bool | None = None
    pinned: bool | None = None


class Achievement(Frame):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    code: str
    name: str
    description: str | None = None
    xp: int | None = None


class AchievementEarned(Frame):
    type: Literal["achievement_earned"] = "achievement_earned"
    user_id: str
    achievement: Achievement


class SocraticSource(Frame):
    """A passage the tutor drew on: document, title, page range and the citation label."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    document_id: str
    title: str
    page_start: int
    page_end: int
    cite: str
    chunk_id: str | None = None
    score: float | None = None


class SocraticResponse(Frame):
    """One frame of a tutor answer, sent to the whole room.

    An answer is a run of frames with the same `answer_id`: `index` 0 (`text` empty, with
    `question`, `asked_by` and `sources`), then deltas (`text` is the next piece, `ephemeral`
    true), then one frame with `done` true whose `text` is the whole answer, with the stored
    message's `message_id`/`message_seq`, or `error` (`tutor_unavailable`, `cancelled`) and
    `detail`. Answers to several questions may interleave; `index` orders each one.
    """

    type: Literal["socratic_response"] = "socratic_response"
    text: str
    done: bool
    thread_id: str | None = None
    ref: str | None = None
    room_id: str | None = None
    answer_id: str | None = None
    index: int | None = None
    mode: Literal["claude", "offline"] | None = None
    ephemeral: bool | None = None
    asked_by: str | None = None
    question: str | None = None
    sources: list[SocraticSource] | None = None
    message_id: str | None = None
    message_seq: Seq | None = None
    error: str | None = None
    detail: str | None = None


class Recovered(Frame):
    type: Literal["recovered"] = "recovered"
    complete: bool
    from_seq: Seq
    to_seq: Seq


class Pong(Frame):
    type: Literal["pong"] = "pong"


class Notification(Frame):
    """Something for this user, whatever room the socket is in (e.g. ingestion progress)."""

    type: Literal["notification"] = "notification"
    kind: str
    data: dict[str, Any] = Field(default_factory=dict)


class Error(Frame):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | None = None
    retry_after: float | None = None


ServerFrame: TypeAlias = (
    Welcome | Ack | NewMessage | UserJoined | UserLeft | TypingStatus | DocumentShared
    | HighlightCreated | ReactionUpdated | MessageUpdated | AchievementEarned
    | SocraticResponse | Recovered | Pong | Notification | FocusState | Error
)

DURABLE_TYPES = frozenset(
    {"new_message", "document_shared", "highlight_created", "reaction_updated", "message_updated"}
)
"""Server frame types written to history with a room `seq`; never dropped silently."""

EPHEMERAL_TYPES = frozenset({"typing_status", "socratic_response", "focus_state"})
"""Server frame types a slow socket may miss (a tutor answer's deltas: its final text is stored
and arrives as a durable `new_message`; a focus timer's state is in every `welcome` and at
`GET /api/v1/rooms/{id}/focus`)."""

def _types_of(union: Any) -> frozenset[str]:
    return frozenset(m.model_fields["type"].default for m in get_args(union))


_CLIENT = TypeAdapter[ClientFrame](Annotated[ClientFrame, Field(discriminator="type")])
_SERVER = TypeAdapter[ServerFrame](Annotated[ServerFrame, Field(discriminator="type")])
CLIENT_TYPES = _types_of(ClientFrame)
SERVER_TYPES = _types_of(ServerFrame)


_F = TypeVar("_F")


def encode(frame: Frame) -> str:
    """Serialise a frame once; unset optional fields are left out."""
    data = frame.model_dump(mode="json", exclude_none=True)
    return orjson.dumps(data).decode()


def decode_client(raw: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> ClientFrame:
    """Parse one frame received from a client into a `ClientFrame` model.

    Raises ProtocolError for anything else: too large, bad JSON, not an object,
    missing or unknown `type`, wrong or oversize fields.
    """
    return _decode(raw, _CLIENT, CLIENT_TYPES, max_bytes)


def decode_server(raw: str | bytes, *, max_bytes: int = 16 * MAX_FRAME_BYTES) -> ServerFrame:
    """Parse one frame sent by the server (for clients, tests and load tools)."""
    return _decode(raw, _SERVER, SERVER_TYPES, max_bytes)


def _decode(raw: str | bytes, adapter: TypeAdapter[_F], types: frozenset[str], max_bytes: int) -> _F:
    if not isinstance(raw, str | bytes):
        raise ProtocolError("invalid_frame", "a frame is text or bytes")
    if len(raw) > max_bytes or (isinstance(raw, str) and len(raw.encode("utf-8", "replace")) > max_bytes):
        raise ProtocolError("frame_too_large", f"frames are limited to {max_bytes} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("invalid_json", "the frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_frame", "a frame is a JSON object")
    ref = data.get("client_msg_id")
    ref = ref if isinstance(ref, str) and len(ref) <= 128 else None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_frame", "a frame needs a string `type`", ref)
    if kind not in types:
        raise ProtocolError("unknown_type", f"unknown frame type {kind[:64]!r}", ref)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError("invalid_frame", _describe(exc), ref) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or "frame"
    return f"{where}: {first['msg']}"[:200]


def token_from_subprotocols(offered: list[str]) -> str | None:
    """The session token offered as subprotocol `bearer.<token>`, if any."""
    for name in offered:
        if name.startswith(BEARER_PREFIX) and len(name) > len(BEARER_PREFIX):
            return name[len(BEARER_PREFIX):]
    return None

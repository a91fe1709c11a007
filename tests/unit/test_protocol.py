"""Frames: round-trips of every frame type, and bad input only ever gives ProtocolError."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomserver import protocol as p

ids = st.text(min_size=1, max_size=40)
texts = st.text(min_size=1, max_size=300)
opt = lambda s: st.none() | s  # noqa: E731
seqs = st.integers(min_value=0, max_value=2**63 - 1)
member = st.builds(p.Member, user_id=ids, username=opt(texts), wallet_address=opt(ids), role=opt(ids))
position = st.builds(
    p.Position,
    start=opt(st.integers(0, 10**6)),
    end=opt(st.integers(0, 10**6)),
    x=opt(st.floats(allow_nan=False, allow_infinity=False)),
)
message = st.builds(
    p.Message, id=ids, user_id=ids, text=texts, username=opt(texts), reply_to=opt(ids),
    client_msg_id=opt(ids), created_at=opt(ids), pinned=st.booleans(), deleted=st.booleans(),
)

CLIENT: dict[str, st.SearchStrategy[Any]] = {
    "auth": st.builds(p.Auth, token=ids, client_msg_id=opt(ids)),
    "chat_message": st.builds(p.ChatMessage, text=texts, client_msg_id=opt(ids), reply_to=opt(ids)),
    "typing_start": st.builds(p.TypingStart, client_msg_id=opt(ids)),
    "typing_stop": st.builds(p.TypingStop),
    "document_share": st.builds(p.DocumentShare, document_id=ids, note=opt(texts)),
    "highlight_create": st.builds(
        p.HighlightCreate, document_id=ids, text=texts, context_before=opt(texts),
        context_after=opt(texts), page=opt(st.integers(0, 1000)), position=opt(position),
        client_msg_id=opt(ids),
    ),
    "reaction_add": st.builds(p.ReactionAdd, message_id=ids, emoji=st.text(min_size=1, max_size=8)),
    "reaction_remove": st.builds(p.ReactionRemove, message_id=ids, emoji=st.text(min_size=1, max_size=8)),
    "socratic_query": st.builds(p.SocraticQuery, question=texts, thread_id=opt(ids)),
    "socratic_cancel": st.builds(p.SocraticCancel),
    "resume": st.builds(p.Resume, last_seq=seqs, client_msg_id=opt(ids)),
    "ping": st.builds(p.Ping),
    "message_delete": st.builds(p.MessageDelete, message_id=ids),
    "message_pin": st.builds(p.MessagePin, message_id=ids, pinned=st.booleans()),
    "kick": st.builds(p.Kick, user_id=ids, reason=opt(texts)),
}
focus = st.builds(
    p.FocusState, phase=st.sampled_from(["work", "break", "paused", "idle"]), started_at=ids,
    ends_at=opt(ids), paused_remaining=opt(st.floats(0, 7200)), cycle=st.integers(0, 12),
    cycles=st.integers(0, 12), room_id=opt(ids), session_id=opt(ids))
SERVER: dict[str, st.SearchStrategy[Any]] = {
    "welcome": st.builds(
        p.Welcome, you=member, room=st.builds(p.RoomInfo, id=ids, name=opt(texts)),
        presence=st.lists(member, max_size=3), seq=seqs, focus=opt(focus),
    ),
    "ack": st.builds(p.Ack, client_msg_id=ids, seq=opt(seqs), message_id=opt(ids)),
    "new_message": st.builds(p.NewMessage, room_id=ids, seq=seqs, message=message),
    "user_joined": st.builds(p.UserJoined, room_id=ids, user=member),
    "user_left": st.builds(p.UserLeft, room_id=ids, user_id=ids, reason=opt(texts)),
    "typing_status": st.builds(p.TypingStatus, room_id=ids, user_id=ids, typing=st.booleans()),
    "document_shared": st.builds(
        p.DocumentShared, room_id=ids, seq=seqs, document_id=ids, shared_by=ids, title=opt(texts)
    ),
    "highlight_created": st.builds(
        p.HighlightCreated, room_id=ids, seq=seqs,
        highlight=st.builds(p.Highlight, id=ids, document_id=ids, user_id=ids, text=texts, position=opt(position)),
    ),
    "reaction_updated": st.builds(
        p.ReactionUpdated, room_id=ids, seq=seqs, message_id=ids, emoji=ids, user_id=ids,
        added=st.booleans(), reactions=st.dictionaries(ids, st.integers(0, 100), max_size=3),
    ),
    "message_updated": st.builds(
        p.MessageUpdated, room_id=ids, seq=seqs, message_id=ids, by=ids,
        deleted=opt(st.booleans()), pinned=opt(st.booleans()),
    ),
    "achievement_earned": st.builds(
        p.AchievementEarned, user_id=ids,
        achievement=st.builds(p.Achievement, code=ids, name=texts, xp=opt(st.integers(0, 10**6))),
    ),
    "socratic_response": st.builds(p.SocraticResponse, text=st.text(max_size=100), done=st.booleans()),
    "recovered": st.builds(p.Recovered, complete=st.booleans(), from_seq=seqs, to_seq=seqs),
    "pong": st.builds(p.Pong),
    "notification": st.builds(
        p.Notification, kind=ids,
        data=st.dictionaries(ids, st.one_of(st.integers(-10**6, 10**6), texts, st.none()), max_size=4),
    ),
    "focus_state": focus,
    "error": st.builds(p.Error, code=ids, message=texts, ref=opt(ids), retry_after=opt(st.floats(0, 100))),
}


def test_every_frame_type_has_a_strategy() -> None:
    assert set(CLIENT) == p.CLIENT_TYPES
    assert set(SERVER) == p.SERVER_TYPES


@settings(max_examples=300)
@given(st.one_of(*CLIENT.values()))
def test_client_frames_round_trip(frame: Any) -> None:
    text = p.encode(frame)
    assert orjson.loads(text)["type"] == frame.type
    assert p.decode_client(text) == frame
    assert p.decode_client(text.encode()) == frame


@settings(max_examples=300)
@given(st.one_of(*SERVER.values()))
def test_server_frames_round_trip(frame: Any) -> None:
    text = p.encode(frame)
    assert p.decode_server(text) == frame
    durable = frame.type in p.DURABLE_TYPES
    assert ("seq" in orjson.loads(text)) == (durable or frame.type == "welcome" or getattr(frame, "seq", None) is not None)


def test_wire_contract_examples() -> None:
    chat = p.decode_client('{"type":"chat_message","text":"hello","client_msg_id":"c-1"}')
    assert isinstance(chat, p.ChatMessage) and chat.text == "hello" and chat.client_msg_id == "c-1"
    resume = p.decode_client('{"type":"resume","last_seq":42}')
    assert isinstance(resume, p.Resume) and resume.last_seq == 42
    auth = p.decode_client('{"type":"auth","token":"tok"}')
    assert isinstance(auth, p.Auth) and auth.token == "tok"
    # unknown extra fields are tolerated so clients can extend frames
    assert p.decode_client('{"type":"ping","extra":{"a":1}}') == p.Ping()
    assert p.token_from_subprotocols(["roomserver.v1", "bearer.abc.def"]) == "abc.def"
    assert p.token_from_subprotocols(["roomserver.v1", "bearer."]) is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ("[1,2]", "invalid_frame"),
        ("42", "invalid_frame"),
        ('{"text":"no type"}', "invalid_frame"),
        ('{"type":7}', "invalid_frame"),
        ('{"type":"launch_rocket"}', "unknown_type"),
        ('{"type":"resume","last_seq":"5"}', "invalid_frame"),
        ('{"type":"resume","last_seq":-1}', "invalid_frame"),
        ('{"type":"resume","last_seq":true}', "invalid_frame"),
        ('{"type":"chat_message","text":""}', "invalid_frame"),
        ('{"type":"chat_message","text":null}', "invalid_frame"),
        ('{"type":"message_pin","message_id":"m","pinned":"yes"}', "invalid_frame"),
        ('{"type":"chat_message","text":"' + "x" * 9000 + '"}', "invalid_frame"),
        ('{"type":"ping","pad":"' + "x" * 70000 + '"}', "frame_too_large"),
        ("[" * 5000 + "]" * 5000, "invalid_json"),
        ('{"type":"resume","last_seq":1e400}', "invalid_json"),
    ],
)
def test_bad_frames_get_typed_errors(raw: str | bytes, code: str) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode_client(raw)
    assert info.value.code == code
    assert len(info.value.message) <= 200


def test_error_refers_to_the_client_msg_id() -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode_client('{"type":"chat_message","client_msg_id":"m-9","text":5}')
    assert info.value.ref == "m-9" and info.value.code == "invalid_frame"
    assert info.value.to_body()["error"]["details"] == {"ref": "m-9"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(p.CLIENT_TYPES)) | st.text(max_size=10)},
    optional={
        "text": json_values, "last_seq": json_values, "client_msg_id": json_values,
        "message_id": json_values, "document_id": json_values, "emoji": json_values,
        "token": json_values, "pinned": json_values, "position": json_values, "page": json_values,
    },
)


@settings(max_examples=500)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_input_only_raises_protocol_error(raw: bytes | str) -> None:
    try:
        p.decode_client(raw)
    except p.ProtocolError:
        pass


@settings(max_examples=500)
@given(json_values | frame_like)
def test_arbitrary_json_only_raises_protocol_error(value: Any) -> None:
    raw = json.dumps(value)  # stdlib: also writes integers beyond 64 bits
    try:
        frame = p.decode_client(raw)
    except p.ProtocolError as exc:
        # Infinity and integers beyond 64 bits are refused as invalid_json
        assert exc.code in {"invalid_json", "invalid_frame", "unknown_type", "frame_too_large"}
    else:
        assert frame.type == value["type"]


def test_focus_state_keeps_its_nulls_on_the_wire() -> None:
    """The issue's contract: `ends_at` and `paused_remaining` are present even when null, also
    inside `welcome.focus`."""
    idle = p.FocusState(phase="idle", started_at="2026-01-01T00:00:00+00:00", ends_at=None,
                        paused_remaining=None, cycle=0, cycles=0)
    wire = orjson.loads(p.encode(idle))
    assert wire == {"type": "focus_state", "phase": "idle", "started_at": "2026-01-01T00:00:00+00:00",
                    "ends_at": None, "paused_remaining": None, "cycle": 0, "cycles": 0}
    welcome = p.Welcome(you=p.Member(user_id="u"), room=p.RoomInfo(id="r"), presence=[], seq=0, focus=idle)
    assert orjson.loads(p.encode(welcome))["focus"] == wire

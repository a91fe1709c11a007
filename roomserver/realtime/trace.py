"""The traffic trace: JSON Lines, one event per line, after one header line.

    {"kind":"header","version":1,"source":"scenario","created_at":"…","meta":{…}}
    {"t":0.25,"room":"room-1","user":"user-7","type":"join","payload":{}}
    {"t":1.5,"room":"room-1","user":"user-7","type":"chat_message","payload":{"text":"hi","client_msg_id":"c-3"}}

`t` is seconds since the trace's start; `room` and `user` are labels local to the trace (the
replayer maps them to real rooms and signed-in users). `type` is a client frame type of
docs/protocol.md (its other fields are `payload`) or a control event: `join` (open a socket),
`leave` (close it), `reconnect` (drop the socket, reconnect and resume). Reactions name the
message they react to by `payload.message_ref`, the trace `client_msg_id` of an earlier chat
message; without one the replayer picks the room's latest message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from roomserver.protocol import CLIENT_TYPES

VERSION: Literal[1] = 1
CONTROL_TYPES = frozenset({"join", "leave", "reconnect"})
FRAME_TYPES = CLIENT_TYPES - {"auth", "resume"}
EVENT_TYPES = CONTROL_TYPES | FRAME_TYPES
DURABLE_FRAME_TYPES = frozenset({"chat_message", "document_share", "highlight_create", "reaction_add",
                                 "reaction_remove", "message_delete", "message_pin"})

Label = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TraceError(ValueError):
    """A trace line that is not a valid header or event; `line` is its 1-based number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class TraceHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["header"] = "header"
    version: Literal[1] = VERSION
    source: Literal["scenario", "recording", "other"] = "other"
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    meta: dict[str, Any] = Field(default_factory=dict)


class TraceEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    t: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    room: Label
    user: Label
    type: Label
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(f"unknown event type {value[:64]!r}")
        return value

    @property
    def durable(self) -> bool:
        return self.type in DURABLE_FRAME_TYPES

    def frame(self) -> dict[str, Any]:
        """The client frame this event sends (control events have none)."""
        return {"type": self.type, **self.payload}


def dumps_event(event: TraceEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def loads_line(raw: str | bytes, line: int = 1) -> TraceHeader | TraceEvent:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TraceError(line, "not valid JSON") from None
    if not isinstance(data, dict):
        raise TraceError(line, "a trace line is a JSON object")
    try:
        if data.get("kind") == "header":
            return TraceHeader.model_validate(data)
        return TraceEvent.model_validate(data)
    except ValidationError as exc:
        raise TraceError(line, _first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'event'}: {first['msg']}"[:200]


class TraceWriter:
    """Writes a header then events to a binary stream, one line each."""

    def __init__(self, out: IO[bytes], header: TraceHeader) -> None:
        self._out = out
        out.write(orjson.dumps(header.model_dump(mode="json")) + b"\n")

    def write(self, event: TraceEvent) -> None:
        self._out.write(dumps_event(event) + b"\n")

    def flush(self) -> None:
        self._out.flush()


def write_trace(path: Path, header: TraceHeader, events: Iterable[TraceEvent]) -> int:
    """Write a whole trace; returns the number of events."""
    count = 0
    with open(path, "wb") as out:
        writer = TraceWriter(out, header)
        for event in events:
            writer.write(event)
            count += 1
    return count


def iter_trace(lines: Iterable[str | bytes]) -> Iterator[TraceHeader | TraceEvent]:
    """Parse lines (blank lines skipped); the header, if any, must come first."""
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        item = loads_line(raw, number)
        if isinstance(item, TraceHeader) and number != 1:
            raise TraceError(number, "the header must be the first line")
        yield item


def read_trace(path: Path, max_events: int | None = None) -> tuple[TraceHeader, list[TraceEvent]]:
    """Read a trace file (at most `max_events` events); a missing header reads as a default one."""
    header = TraceHeader()
    events: list[TraceEvent] = []
    limit = math.inf if max_events is None else max_events
    with open(path, "rb") as source:
        for item in iter_trace(source):
            if isinstance(item, TraceHeader):
                header = item
                continue
            if len(events) >= limit:
                break
            events.append(item)
    return header, events

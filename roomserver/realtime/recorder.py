"""Opt-in recording of live room traffic into the trace format (roomserver/realtime/trace.py).

The realtime layer calls `TrafficRecorder.observe(room_id, user_id, type, fields)` for every
join, leave and client frame it accepts (the `observer` passed to `Realtime`). Only rooms named in
RECORD_ROOMS are kept ("*": all). Identities are pseudonymised: users become `user-<hmac>`
under a random key that lives only in memory (two recordings cannot be linked), rooms become
`room-<n>`; ids that point into the server (message, reply, thread and client ids) are dropped
and a kick's target is pseudonymised like any user. Message text is kept: record only rooms
whose members agreed to it. One file per process: RECORD_DIR/record-<time>-<pid>.jsonl.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import IO, Any

from roomserver.realtime.trace import EVENT_TYPES, TraceEvent, TraceHeader, TraceWriter

DROPPED_FIELDS = frozenset({"client_msg_id", "message_id", "reply_to", "thread_id", "answer_id", "token"})
FLUSH_SECONDS = 1.0


def parse_rooms(raw: str) -> frozenset[str] | None:
    """RECORD_ROOMS: comma-separated room ids; "*" means every room (None)."""
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    return None if "*" in names else names


class TrafficRecorder:
    def __init__(self, rooms: frozenset[str] | None, directory: Path, *, key: bytes | None = None) -> None:
        self.rooms = rooms
        self.path = directory / f"record-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        self._key = key or secrets.token_bytes(32)
        self._room_labels: dict[str, str] = {}
        self._started = time.monotonic()
        self._flushed = self._started
        self._file: IO[bytes] | None = None
        self._writer: TraceWriter | None = None
        self.events = 0
        self.closed = False

    def wants(self, room_id: str) -> bool:
        return self.rooms is None or room_id in self.rooms

    def observe(self, room_id: str, user_id: str, kind: str, fields: dict[str, Any]) -> None:
        """Record one join/leave/frame of `user_id` in `room_id` (no-op for other rooms)."""
        if self.closed or not self.wants(room_id) or kind not in EVENT_TYPES:
            return
        payload = {k: v for k, v in fields.items() if k not in DROPPED_FIELDS and k != "type"}
        if kind == "kick" and isinstance(payload.get("user_id"), str):
            payload["user_id"] = self.pseudonym(payload["user_id"])
        now = time.monotonic()
        event = TraceEvent(t=round(now - self._started, 4), room=self._room(room_id),
                           user=self.pseudonym(user_id), type=kind, payload=payload)
        self._open().write(event)
        self.events += 1
        if now - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def pseudonym(self, user_id: str) -> str:
        return "user-" + hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()[:12]

    def _room(self, room_id: str) -> str:
        label = self._room_labels.get(room_id)
        if label is None:
            label = self._room_labels[room_id] = f"room-{len(self._room_labels) + 1}"
        return label

    def _open(self) -> TraceWriter:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
            self._writer = TraceWriter(self._file, TraceHeader(source="recording",
                                                               meta={"pseudonymised": True}))
        return self._writer

    def flush(self) -> None:
        self._flushed = time.monotonic()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self.closed = True
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

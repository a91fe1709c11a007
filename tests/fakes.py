"""In-memory stand-ins at the boundaries: a history reader, sockets (prompt, stuck), a broker
handler, a clock, and a poll helper. Shared by the unit and integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from roomserver import protocol as p
from roomserver.realtime.broker import MemoryBroker, RedisBroker
from roomserver.realtime.hub import Hub


async def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


class History:
    """Stands in for the Postgres history reader: per-room seq assigned at append."""

    def __init__(self) -> None:
        self.events: dict[str, list[str]] = {}
        self.fetches: list[tuple[str, int, int]] = []
        self.broken = False

    def append(self, room_id: str, text: str = "hi") -> str:
        events = self.events.setdefault(room_id, [])
        seq = len(events) + 1
        message = p.Message(id=f"m{seq}", user_id="u", text=text)
        events.append(p.encode(p.NewMessage(room_id=room_id, seq=seq, message=message)))
        return events[-1]

    async def fetch_range(self, room_id: str, after: int, up_to: int) -> list[tuple[int, str]]:
        self.fetches.append((room_id, after, up_to))
        if self.broken:
            raise OSError("database down")
        events = self.events.get(room_id, [])
        return [(seq, events[seq - 1]) for seq in range(after + 1, min(up_to, len(events)) + 1)]

    async def current_seq(self, room_id: str) -> int:
        return len(self.events.get(room_id, []))


class Outlet:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed: tuple[int, str] | None = None

    def write(self, text: str) -> bool:
        self.frames.append(text)
        return True

    async def send(self, text: str) -> None:
        self.frames.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def seqs(self) -> list[int]:
        return [orjson.loads(f)["seq"] for f in self.frames if '"seq"' in f]


class StuckOutlet(Outlet):
    """A client that never reads: every write would wait, and sends never finish."""

    def write(self, text: str) -> bool:
        return False

    async def send(self, text: str) -> None:
        await asyncio.Event().wait()


def make_hub(broker: MemoryBroker | RedisBroker, history: History, **kw: Any) -> Hub:
    return Hub(broker, fetch_range=history.fetch_range, current_seq=history.current_seq, **kw)


class Inbox:
    """A broker handler that records what it is given."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def __call__(self, channel: str, data: bytes) -> None:
        self.items.append((channel, data))


class FakeClock:
    """A clock that moves only when a test sets `now`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

"""The hub with real brokers: fan-out, slow consumers, seq order, gap repair across outages."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import orjson
import pytest

from roomserver import protocol as p
from roomserver.errors import CloseCode, Unavailable
from roomserver.realtime.broker import MemoryBroker, RedisBroker, room_messages
from roomserver.realtime.hub import Connection, Hub
from tests.redis_fixtures import RedisServer, redis_server, redis_url  # noqa: F401


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


def make_hub(broker: MemoryBroker | RedisBroker, history: History, **kw: float) -> Hub:
    return Hub(broker, fetch_range=history.fetch_range, current_seq=history.current_seq, **kw)


async def test_subscribes_once_per_room_and_shares_one_encoded_str() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)
    a, b = Outlet(), Outlet()
    ca, cb = Connection(a, "r1", "alice"), Connection(b, "r1", "bob")
    await hub.join(ca)
    await hub.join(cb)
    assert broker.channels == set(Hub.channels("r1"))
    await broker.publish(room_messages("r1"), history.append("r1"))
    typing = p.encode(p.TypingStatus(room_id="r1", user_id="alice", typing=True))
    hub.deliver("r1", typing, ephemeral=True)
    assert a.seqs() == b.seqs() == [1]
    assert a.frames[1] is b.frames[1] is typing  # one object for every socket
    await hub.leave(ca)
    assert broker.channels == set(Hub.channels("r1"))
    await hub.leave(cb)
    await hub.leave(cb)  # idempotent
    assert broker.channels == frozenset()


async def test_slow_consumer_is_cut_off_and_never_delays_the_room() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history, max_backlog=50)
    stuck, normal = StuckOutlet(), [Outlet() for _ in range(3)]
    await hub.join(Connection(stuck, "r2", "slow"))
    for i, outlet in enumerate(normal):
        await hub.join(Connection(outlet, "r2", f"u{i}"))
    typing = p.encode(p.TypingStatus(room_id="r2", user_id="u0", typing=True))
    for _ in range(400):
        hub.deliver("r2", typing, ephemeral=True)  # dropped for the stuck socket, not counted
        await broker.publish(room_messages("r2"), history.append("r2", "x" * 2000))
    assert all(o.seqs() == list(range(1, 401)) for o in normal)
    await wait_until(lambda: stuck.closed is not None)
    assert stuck.closed == (CloseCode.SLOW_CONSUMER, "slow consumer")
    assert [c.outlet for c in hub.members("r2")] == normal
    await hub.close()


async def test_backlogged_socket_catches_up_in_order() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)

    class Bursty(Outlet):
        def __init__(self) -> None:
            super().__init__()
            self.full = True

        def write(self, text: str) -> bool:
            return not self.full and super().write(text)

    bursty = Bursty()
    await hub.join(Connection(bursty, "r3", "u"))
    for _ in range(20):
        await broker.publish(room_messages("r3"), history.append("r3"))
    bursty.full = False
    await wait_until(lambda: len(bursty.frames) == 20)
    for _ in range(5):
        await broker.publish(room_messages("r3"), history.append("r3"))
    assert bursty.seqs() == list(range(1, 26)) and bursty.closed is None


async def test_gap_is_repaired_from_history_before_later_events() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)
    out = Outlet()
    await hub.join(Connection(out, "r4", "u"))
    frames = [history.append("r4") for _ in range(6)]
    for i in (0, 1, 4, 1, 5, 2):  # seq 4 lost in transit, seq 3 late, seq 2 twice
        await broker.publish(room_messages("r4"), frames[i])
    await wait_until(lambda: len(out.frames) == 6)
    await asyncio.sleep(0.1)
    assert out.seqs() == [1, 2, 3, 4, 5, 6]
    assert history.fetches == [("r4", 3, 4)]  # the straggler 3 was waited for, not fetched


async def test_history_failure_closes_sockets_to_resume() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)
    out = Outlet()
    await hub.join(Connection(out, "r5", "u"))
    history.broken = True
    history.append("r5")
    await broker.publish(room_messages("r5"), history.append("r5"))
    await wait_until(lambda: out.closed is not None)
    assert out.closed is not None and out.closed[0] == CloseCode.INSUFFICIENT_STATE
    assert CloseCode(out.closed[0]).should_reconnect


async def test_1000_events_from_several_publishers_reach_two_hubs_in_order(
    redis_url: str,  # noqa: F811
) -> None:
    history, room = History(), uuid.uuid4().hex
    subs = [RedisBroker(redis_url) for _ in range(2)]
    pubs = [RedisBroker(redis_url) for _ in range(4)]
    for broker in (*subs, *pubs):
        await broker.start()
    hubs = [make_hub(b, history) for b in subs]
    outlets = [[Outlet(), Outlet()] for _ in hubs]
    try:
        for hub, pair in zip(hubs, outlets, strict=True):
            for i, outlet in enumerate(pair):
                await hub.join(Connection(outlet, room, f"u{i}"))

        async def publisher(broker: RedisBroker, count: int) -> None:
            for _ in range(count):
                await broker.publish(room_messages(room), history.append(room))
                if random.random() < 0.2:
                    await asyncio.sleep(0)

        await asyncio.gather(*(publisher(b, 250) for b in pubs))
        everyone = [o for pair in outlets for o in pair]
        await wait_until(lambda: all(len(o.frames) >= 1000 for o in everyone))
        await asyncio.sleep(0.2)
        for outlet in everyone:
            assert outlet.seqs() == list(range(1, 1001))
    finally:
        for hub in hubs:
            await hub.close()
        for broker in (*subs, *pubs):
            await broker.close()


async def test_events_published_during_a_redis_outage_are_repaired(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    history, room = History(), "r-outage"
    sub = RedisBroker(redis_server.url, ping_interval=0.5, backoff_min=0.02, backoff_max=0.3)
    pub = RedisBroker(redis_server.url)
    await sub.start()
    await pub.start()
    hub = make_hub(sub, history)
    out = Outlet()
    try:
        await hub.join(Connection(out, room, "u"))
        await pub.publish(room_messages(room), history.append(room))
        await wait_until(lambda: out.seqs() == [1])
        redis_server.stop()
        await wait_until(lambda: not sub.healthy)
        for _ in range(5):  # durable in history, but the publish cannot reach anyone
            frame = history.append(room)
            with pytest.raises(Unavailable):
                await pub.publish(room_messages(room), frame)
        redis_server.start()
        await wait_until(lambda: sub.healthy)
        await wait_until(lambda: len(out.frames) == 6)
        await pub.publish(room_messages(room), history.append(room))
        await wait_until(lambda: len(out.frames) == 7)
        assert out.seqs() == list(range(1, 8))
    finally:
        await hub.close()
        await sub.close()
        await pub.close()

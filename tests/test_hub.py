"""The hub with real Redis brokers: order across publishers and nodes, gap repair across outages."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from roomserver.errors import Unavailable
from roomserver.realtime.broker import RedisBroker, room_messages
from roomserver.realtime.hub import Connection
from tests.fakes import History, Outlet, make_hub, wait_until
from tests.redis_fixtures import RedisServer


async def test_1000_events_from_several_publishers_reach_two_hubs_in_order(
    redis_url: str,
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
    redis_server: RedisServer,
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

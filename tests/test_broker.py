"""Brokers against real Redis: fan-out, one subscription per channel, survival of outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from roomserver.errors import Unavailable
from roomserver.realtime import broker as b
from tests.fakes import Inbox, wait_until
from tests.redis_fixtures import RedisServer


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[b.RedisBroker, b.RedisBroker]]:
    one, two = b.RedisBroker(redis_url), b.RedisBroker(redis_url)
    await one.start()
    await two.start()
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


async def test_redis_fan_out_between_two_nodes(
    pair: tuple[b.RedisBroker, b.RedisBroker], redis_url: str
) -> None:
    one, two = pair
    assert one.healthy and two.healthy
    channel = b.room_messages(uuid.uuid4().hex)
    inbox = Inbox()
    await two.subscribe(channel, inbox)
    await two.subscribe(channel, inbox)  # idempotent: still one Redis subscription
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.pubsub_numsub(channel) == [(channel.encode(), 1)]
        # a burst is pipelined through one connection and arrives in order
        await asyncio.gather(*(one.publish(channel, f"m{i}") for i in range(200)))
        await wait_until(lambda: len(inbox.items) == 200)
        assert [data for _, data in inbox.items] == [f"m{i}".encode() for i in range(200)]
        await two.unsubscribe(channel)
        await asyncio.sleep(0.05)
        assert await client.pubsub_numsub(channel) == [(channel.encode(), 0)]
    finally:
        await client.aclose()


async def _started(url: str) -> tuple[b.RedisBroker, Inbox, list[frozenset[str]], str]:
    broker = b.RedisBroker(url, ping_interval=0.5, backoff_min=0.02, backoff_max=0.3)
    hooks: list[frozenset[str]] = []

    async def hook(channels: frozenset[str]) -> None:
        hooks.append(channels)

    broker.on_resubscribed(hook)
    await broker.start()
    channel = b.room_messages(uuid.uuid4().hex)
    inbox = Inbox()
    await broker.subscribe(channel, inbox)
    return broker, inbox, hooks, channel


async def test_listener_survives_client_kill(redis_server: RedisServer) -> None:
    sub, inbox, hooks, channel = await _started(redis_server.url)
    pub = b.RedisBroker(redis_server.url)
    await pub.start()
    try:
        await pub.publish(channel, "before")
        await wait_until(lambda: len(inbox.items) == 1)
        redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
        await wait_until(lambda: sub.outages == 1)
        await wait_until(lambda: sub.healthy and hooks == [frozenset({channel})])
        await pub.publish(channel, "after")
        await wait_until(lambda: len(inbox.items) == 2)
        assert inbox.items[1] == (channel, b"after")
    finally:
        await sub.close()
        await pub.close()


async def test_listener_survives_redis_restart(redis_server: RedisServer) -> None:
    sub, inbox, hooks, channel = await _started(redis_server.url)
    pub = b.RedisBroker(redis_server.url)
    await pub.start()
    try:
        redis_server.stop()
        await wait_until(lambda: not sub.healthy)
        with pytest.raises(Unavailable) as info:
            await pub.publish(channel, "lost")
        assert info.value.code == "broker_unavailable"
        await asyncio.sleep(0.5)  # several failed reconnect attempts
        assert not sub.healthy and hooks == []
        redis_server.start()
        await wait_until(lambda: sub.healthy and len(hooks) == 1)
        await pub.publish(channel, "back")
        await wait_until(lambda: len(inbox.items) == 1)
        assert inbox.items == [(channel, b"back")]
    finally:
        await sub.close()
        await pub.close()


async def test_start_against_a_dead_redis_reports_unhealthy_then_recovers() -> None:
    server = RedisServer()
    broker = b.RedisBroker(server.url, connect_timeout=0.3, backoff_min=0.02, backoff_max=0.2)
    await broker.start()
    try:
        assert not broker.healthy
        server.start()
        await wait_until(lambda: broker.healthy)
    finally:
        await broker.close()
        server.stop()

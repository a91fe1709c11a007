"""Presence on the memory store and on real Redis: one entry per user, TTLs, debounced leaves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from roomserver.realtime.presence import MemoryPresence, Presence, PresenceTracker, RedisPresence

TTL = 1.0


@pytest.fixture(params=["memory", "redis"])
async def make_store(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[Callable[..., Presence]]:
    if request.param == "memory":
        shared = MemoryPresence(ttl=TTL)
        yield lambda: shared  # nodes of one process share the memory store
        return
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"test-presence-{uuid.uuid4().hex}"
    yield lambda: RedisPresence(client, ttl=TTL, prefix=prefix)
    await client.aclose()


def alice() -> dict[str, str]:
    return {"user_id": "alice", "username": "Alice"}


async def test_two_tabs_on_two_nodes_are_one_member(make_store: Callable[..., Presence]) -> None:
    left: list[tuple[str, str]] = []

    async def on_leave(room: str, user: str) -> None:
        left.append((room, user))

    a = PresenceTracker(make_store(), "node-a", leave_grace=0.05, on_leave=on_leave)
    b = PresenceTracker(make_store(), "node-b", leave_grace=0.05, on_leave=on_leave)
    assert await a.connect("r1", alice()) is True
    assert await a.connect("r1", alice()) is False  # second tab
    assert await b.connect("r1", alice()) is False  # third tab, other node
    assert await a.store.members("r1") == [alice()]
    await a.disconnect("r1", "alice")
    await a.disconnect("r1", "alice")
    await asyncio.sleep(0.2)
    assert left == [] and await a.store.members("r1") == [alice()]  # still on node b
    await b.disconnect("r1", "alice")
    await asyncio.sleep(0.2)
    assert left == [("r1", "alice")]
    assert await a.store.members("r1") == []


async def test_reconnect_within_grace_emits_neither_leave_nor_join(
    make_store: Callable[..., Presence],
) -> None:
    left: list[tuple[str, str]] = []

    async def on_leave(room: str, user: str) -> None:
        left.append((room, user))

    node = PresenceTracker(make_store(), "node-a", leave_grace=0.3, on_leave=on_leave)
    assert await node.connect("r2", alice())
    await node.disconnect("r2", "alice")
    await asyncio.sleep(0.05)
    assert await node.connect("r2", alice()) is False  # no second user_joined
    await asyncio.sleep(0.4)
    assert left == [] and [m["user_id"] for m in await node.store.members("r2")] == ["alice"]
    await node.close()
    assert await node.store.members("r2") == []


async def test_crashed_node_users_vanish_after_ttl_while_heartbeats_keep_others(
    make_store: Callable[..., Presence],
) -> None:
    crashed = PresenceTracker(make_store(), "node-crashed")
    alive = PresenceTracker(make_store(), "node-alive")
    await crashed.connect("r3", alice())
    await alive.connect("r3", {"user_id": "bob"})
    for _ in range(6):  # 1.5 TTLs; only the live node heartbeats
        await asyncio.sleep(TTL / 4)
        await alive.heartbeat()
    members = await alive.store.members("r3")
    assert [m["user_id"] for m in members] == ["bob"]


async def test_redis_keys_expire_by_themselves(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"test-presence-{uuid.uuid4().hex}"
    try:
        store = RedisPresence(client, ttl=TTL, prefix=prefix)
        await store.add("r5", "alice", "n", alice())
        keys = await client.keys(f"{prefix}:*")
        assert len(keys) == 2
        assert all(0 < ttl <= 7 for ttl in [await client.ttl(k) for k in keys])
    finally:
        await client.aclose()


async def test_nodes_counts_users_per_node_until_their_entries_expire(
        make_store: Callable[..., Presence]) -> None:
    store = make_store()
    bob = {"user_id": "bob"}
    await store.add("r9", "alice", "node-a", alice())
    await store.add("r9", "alice", "node-b", alice())  # alice's second tab, on node b
    await store.add("r9", "bob", "node-b", bob)
    assert await store.nodes("r9") == {"node-a": 1, "node-b": 2}
    assert await store.nodes("elsewhere") == {}
    await store.remove("r9", "alice", "node-b")
    assert await store.nodes("r9") == {"node-a": 1, "node-b": 1}
    await asyncio.sleep(TTL + 0.2)  # nobody refreshed: every entry expired
    assert await store.nodes("r9") == {}

"""Rate-limit buckets counted in a real Redis: shared by every limiter (node) of one name,
atomic under concurrency, expiring, and falling back to this process when Redis is down."""

from __future__ import annotations

import asyncio
import time

import pytest

from roomserver.errors import RateLimited
from roomserver.ratelimit import RedisLimiter, limiters
from roomserver.realtime.broker import redis_client
from tests.redis_fixtures import RedisServer


async def _admitted(limiter: RedisLimiter, key: str, n: int) -> int:
    ok = 0
    for _ in range(n):
        try:
            await limiter.hit(key)
            ok += 1
        except RateLimited:
            pass
    return ok


async def test_two_limiters_of_one_name_share_the_bucket(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        a, b = RedisLimiter(client, "shared", 0.01, 10), RedisLimiter(client, "shared", 0.01, 10)
        other = RedisLimiter(client, "other", 0.01, 10)
        assert await _admitted(a, "alice", 6) + await _admitted(b, "alice", 6) == 10
        with pytest.raises(RateLimited) as info:
            await b.hit("alice")
        assert 0 < info.value.retry_after <= 100  # one token at 0.01/s
        assert await _admitted(other, "alice", 3) == 3  # another limit's bucket
        assert await _admitted(a, "bob", 3) == 3  # another key's bucket
        assert 0 < await client.pttl("ratelimit:shared:{alice}") <= 1_001_000
    finally:
        await client.aclose()


async def test_concurrent_checks_never_overspend(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        limiter = RedisLimiter(client, "race", 0.001, 25)
        results = await asyncio.gather(*(limiter.hit("k") for _ in range(100)), return_exceptions=True)
        assert sum(r is None for r in results) == 25
        assert all(isinstance(r, RateLimited) for r in results if r is not None)
    finally:
        await client.aclose()


async def test_redis_down_counts_on_this_node_without_stalling(redis_server: RedisServer) -> None:
    client = redis_client(redis_server.url, timeout=0.5, retries=1)  # as the app builds it
    try:
        limiter = limiters(client)("down", 0.01, 3)
        await limiter.hit("carol")  # counted in Redis
        redis_server.stop()
        started = time.monotonic()
        for _ in range(3):  # the first failure starts the cooldown; the rest skip Redis
            await limiter.hit("carol")
        with pytest.raises(RateLimited):
            await limiter.hit("carol")
        assert time.monotonic() - started < 2.0
        redis_server.start()
        await asyncio.sleep(1.1)  # past the cooldown: counted in Redis again (a fresh bucket there)
        await limiter.hit("carol")
        assert await client.exists("ratelimit:down:{carol}") == 1
    finally:
        await client.aclose()

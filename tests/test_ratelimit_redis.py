"""Rate-limit buckets counted in a real Redis: shared by every limiter (node) of one name,
atomic under concurrency, expiring, and falling back to this process when Redis is down."""

from __future__ import annotations

import asyncio

import pytest

from roomserver.errors import RateLimited
from roomserver.ratelimit import RedisLimiter, limiters
from roomserver.realtime.broker import redis_client
from roomserver.store.ports import free_port


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


async def test_redis_down_counts_on_this_node() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    try:
        limiter = limiters(client)("down", 0.01, 3)
        for _ in range(3):
            await limiter.hit("carol")
        with pytest.raises(RateLimited):
            await limiter.hit("carol")
    finally:
        await client.aclose()

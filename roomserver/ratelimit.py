"""Token buckets keyed by anything hashable (user id, IP, (user, frame kind), ...), and caps on
what is held at once per key (`Slots`: open sockets per user, per IP).

`RateLimiter(rate, burst)`: each key holds up to `burst` tokens, refilled at `rate` tokens
per second; a check spends one. Memory is bounded: buckets that have refilled completely
carry no information and are dropped, and past `max_keys` the least recently used go.
Single-threaded (one event loop); time comes from an injectable monotonic clock.

Shared limits (`Limiter`, async): the same bucket counted where every node sees it.
`MemoryLimiter` keeps it in this process (one node, or a limit that is per node by nature);
`RedisLimiter` keeps it in Redis (one Lua script per check: one round trip, atomic across
nodes; Redis's clock). Its keys are `ratelimit:NAME:{KEY}`: each bucket is one key and, on a
Redis Cluster, its own hash slot (a room's is `ratelimit:NAME:{room:ID}`, the room's slot).
`limiters(client)` makes one kind or the other by name, rate and burst.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from redis.exceptions import RedisError

from roomserver.errors import RateLimited

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens, at); most recently used last
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: Hashable, cost: float = 1.0) -> float:
        """Spend `cost` tokens if available and return 0.0, else spend nothing and
        return the seconds until they would be."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        self._evict(now)
        return wait

    def check(self, key: Hashable, cost: float = 1.0) -> None:
        """Spend `cost` tokens or raise RateLimited(retry_after=seconds)."""
        wait = self.acquire(key, cost)
        if wait > 0:
            raise RateLimited(retry_after=wait)

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)
        # the oldest entries first: drop those that have refilled completely
        for _ in range(2):
            if not buckets:
                break
            key, (tokens, at) = next(iter(buckets.items()))
            if tokens + (now - at) * self.rate < self.burst:
                break
            del buckets[key]


class Slot:
    """One held place of a `Slots`; `release()` gives it back (once; later calls do nothing)."""

    def __init__(self, slots: Slots, key: Hashable) -> None:
        self._slots: Slots | None = slots
        self._key = key

    def release(self) -> None:
        if self._slots is not None:
            self._slots._release(self._key)
            self._slots = None


class Slots:
    """At most `limit` places held at once per key; `claim` raises RateLimited(code) past it.
    Memory: one count per key holding any."""

    def __init__(self, limit: int, *, code: str, what: str, retry_after: float = 5.0) -> None:
        self.limit, self.code, self.what, self.retry_after = limit, code, what, retry_after
        self._held: dict[Hashable, int] = {}

    def held(self, key: Hashable) -> int:
        return self._held.get(key, 0)

    def claim(self, key: Hashable) -> Slot:
        count = self._held.get(key, 0)
        if count >= self.limit:
            raise RateLimited(f"too many open {self.what} (at most {self.limit})", code=self.code,
                              retry_after=self.retry_after, details={"limit": self.limit})
        self._held[key] = count + 1
        return Slot(self, key)

    def _release(self, key: Hashable) -> None:
        count = self._held.pop(key, 0) - 1
        if count > 0:
            self._held[key] = count


class Limiter(Protocol):
    async def hit(self, key: str, cost: float = 1.0) -> None:
        """Spend `cost` tokens of `key`'s bucket or raise RateLimited(retry_after=seconds)."""


LimiterFactory = Callable[[str, float, float], Limiter]
"""(name, rate per second, burst) -> a Limiter; the name keeps buckets of different limits apart."""


class MemoryLimiter:
    """A `RateLimiter` behind the async `Limiter` interface: counted in this process only."""

    def __init__(self, rate: float, burst: float, **options: Any) -> None:
        self.bucket = RateLimiter(rate, burst, **options)

    async def hit(self, key: str, cost: float = 1.0) -> None:
        self.bucket.check(key, cost)


TOKEN_BUCKET = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(held[1]) or burst
local at = tonumber(held[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""
"""The token bucket of `RateLimiter`, as one atomic step in Redis; answers the wait in seconds."""


class RedisLimiter:
    """A bucket shared by every node through Redis (or a Redis Cluster client).

    When Redis cannot answer, the check falls back to a bucket of this process (logged once per
    outage), and so do the checks of the next `cooldown` seconds without trying Redis: limits
    loosen to per node for the outage rather than refusing or stalling every request."""

    def __init__(self, client: Any, name: str, rate: float, burst: float, *,
                 cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.name, self.rate, self.burst = name, rate, float(burst)
        self._script = client.register_script(TOKEN_BUCKET)
        self._fallback = RateLimiter(rate, burst, clock=clock)
        self._cooldown, self._clock = cooldown, clock
        self._down_until = 0.0
        self._failing = False

    def key(self, key: str) -> str:
        return f"ratelimit:{self.name}:{{{key}}}"

    async def hit(self, key: str, cost: float = 1.0) -> None:
        if self._clock() < self._down_until:
            self._fallback.check(key, cost)
            return
        try:
            wait = float(await self._script(keys=[self.key(key)], args=[self.rate, self.burst, cost]))
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("rate limit %s counted on this node only: Redis failed (%s)", self.name, exc)
            self._failing = True
            self._down_until = self._clock() + self._cooldown
            self._fallback.check(key, cost)
            return
        self._failing = False
        if wait > 0:
            raise RateLimited(retry_after=wait)


def limiters(client: Any | None) -> LimiterFactory:
    """Shared (Redis) limiters with a client, else in-memory ones."""
    def make(name: str, rate: float, burst: float) -> Limiter:
        if client is None:
            return MemoryLimiter(rate, burst)
        return RedisLimiter(client, name, rate, burst)

    return make


def memory_limiters(name: str, rate: float, burst: float) -> Limiter:
    """The in-memory `LimiterFactory` (single node, tests)."""
    return MemoryLimiter(rate, burst)

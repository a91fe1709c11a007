"""Token buckets keyed by anything hashable (user id, IP, (user, frame kind), ...), and caps on
what is held at once per key (`Slots`: open sockets per user, per IP).

`RateLimiter(rate, burst)`: each key holds up to `burst` tokens, refilled at `rate` tokens
per second; a check spends one. Memory is bounded: buckets that have refilled completely
carry no information and are dropped, and past `max_keys` the least recently used go.
Single-threaded (one event loop); time comes from an injectable monotonic clock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from roomserver.errors import RateLimited


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

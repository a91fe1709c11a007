"""Token buckets keyed by anything hashable (user id, IP, (user, frame kind), ...).

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

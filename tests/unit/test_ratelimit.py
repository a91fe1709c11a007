"""Token buckets: burst, refill, retry_after, independence of keys, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.errors import RateLimited
from roomserver.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=5, clock=clock)
    for _ in range(5):
        limiter.check("alice")
    with pytest.raises(RateLimited) as info:
        limiter.check("alice")
    assert info.value.retry_after == pytest.approx(0.5)
    assert info.value.status == 429 and info.value.details == {"retry_after": 0.5}
    # other keys are unaffected
    limiter.check("bob")


def test_tokens_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=1, clock=clock)
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.acquire("k") == 0
    clock.now += 5  # refill never exceeds the burst
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") > 0


def test_idle_keys_are_evicted_and_memory_is_capped() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=3, max_keys=100, clock=clock)
    for i in range(1000):
        limiter.check(("ip", i))
    assert len(limiter) == 100
    clock.now += 10  # all buckets are full again: they carry no state
    for i in range(200):
        limiter.check(("user", i))
        clock.now += 0.001
    assert len(limiter) <= 100
    assert all(key[0] == "user" for key in limiter._buckets)


def test_refused_checks_spend_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    limiter.check("k")
    for _ in range(10):
        assert limiter.acquire("k") > 0
    clock.now += 1.0
    assert limiter.acquire("k") == 0


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)


@given(
    rate=st.floats(0.1, 100), burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, burst: int, gaps: list[float]) -> None:
    clock = Clock()
    limiter = RateLimiter(rate=rate, burst=burst, clock=clock)
    start, allowed = clock.now, 0
    for gap in gaps:
        clock.now += gap
        allowed += limiter.acquire("k") == 0
    assert allowed <= burst + rate * (clock.now - start) + 1e-6

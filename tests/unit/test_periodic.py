"""The one interval loop: failures are counted and logged, the loop goes on, close stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from roomserver.periodic import Periodic


async def test_a_failing_step_is_counted_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    calls, failures = [], []

    async def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database restarting")

    loop = Periodic("test pass", 0.01, step, first_now=True, on_failure=lambda: failures.append(1),
                    level=logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="roomserver.periodic"):
        loop.start()
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        await loop.close()
    assert failures == [1]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "test pass failed" in caplog.records[0].getMessage()
    done = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == done  # closed: no more rounds


async def test_without_first_now_the_first_round_waits_an_interval() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)

    loop = Periodic("test", 0.2, step)
    loop.start()
    loop.start()  # a second start while running changes nothing
    await asyncio.sleep(0.05)
    assert calls == []
    await loop.close()

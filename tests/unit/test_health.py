"""The health probes: a failed probe reports its exception type only (its message is logged with
URLs redacted), and public readiness runs the probes once per second however many ask."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from roomserver.api.health import SharedProbe, probe_all


async def test_a_failed_probe_shows_its_type_only_and_logs_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> dict[str, Any]:
        raise ConnectionError("cannot reach https://rpc.example/v2/SECRETPATH?api-key=SECRETKEY")

    async def fine() -> dict[str, Any]:
        return {"ok": True}

    with caplog.at_level(logging.WARNING):
        results = await probe_all({"solana": broken, "database": fine})
    assert results["solana"] == {"ok": False, "detail": {"error": "ConnectionError"}}
    assert results["database"]["ok"] is True and "latency_ms" in results["database"]["detail"]
    assert "https://rpc.example/***" in caplog.text
    assert "SECRET" not in caplog.text


async def test_public_readiness_probes_once_per_ttl_for_any_number_of_callers() -> None:
    calls = 0

    async def slow() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"ok": True}

    shared = SharedProbe(ttl=0.5)
    up = {"database": True}
    answers = await asyncio.gather(*(shared.results({"database": slow}) for _ in range(50)))
    assert answers == [up] * 50 and calls == 1  # one run shared by concurrent callers
    assert await shared.results({"database": slow}) == up and calls == 1  # within the TTL: no new run
    await asyncio.sleep(0.6)
    assert await shared.results({"database": slow}) == up and calls == 2

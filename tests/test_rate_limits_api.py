"""Authenticated REST calls are rate limited per user (and per IP), with a typed 429."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from roomserver.config import Settings
from tests.clients import sign_in


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, rate_limit_per_minute=60)  # burst 15 per user


async def test_a_user_past_the_budget_gets_429_with_retry_after(http: httpx.AsyncClient) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    answers = [await http.get("/api/v1/users/profile", headers=alice.headers) for _ in range(25)]
    codes = [a.status_code for a in answers]
    assert codes[0] == 200 and 429 in codes
    refused = answers[codes.index(429)]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"]["retry_after"] > 0
    assert int(refused.headers["Retry-After"]) >= 1
    # another user from the same IP still has their own budget
    assert (await http.get("/api/v1/users/profile", headers=bob.headers)).status_code == 200

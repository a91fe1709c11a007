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


def from_address(base_url: str, address: str) -> httpx.AsyncClient:
    """A client whose connections come from `address` (any of 127.0.0.0/8 reaches the server)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30)


async def test_one_ip_past_its_budget_gets_429_whoever_signs_in(base_url: str) -> None:
    """Many users from one address, each well inside their own budget (burst 15), exhaust the
    address's (burst 60): the refusal is per IP, covers sign-in, and spares other addresses."""
    async with from_address(base_url, "127.0.0.3") as crowd, from_address(base_url, "127.0.0.2") as other:
        users = [await sign_in(crowd) for _ in range(8)]
        sent = dict.fromkeys(range(len(users)), 0)
        refused: tuple[int, httpx.Response] | None = None
        for turn in range(400):
            who = turn % len(users)
            answer = await crowd.get("/api/v1/users/profile", headers=users[who].headers)
            sent[who] += 1
            if answer.status_code == 429:
                refused = who, answer
                break
            assert answer.status_code == 200, answer.text
        assert refused is not None, "the address was never refused"
        who, answer = refused
        assert sent[who] < 15  # this user's own budget cannot be what refused them
        assert answer.json()["error"]["code"] == "rate_limited"
        assert answer.json()["error"]["details"]["retry_after"] > 0
        assert int(answer.headers["Retry-After"]) >= 1
        challenges = [await crowd.post("/api/v1/auth/siws/challenge", json={"address": users[0].wallet.address})
                      for _ in range(10)]
        assert 429 in [c.status_code for c in challenges]  # signing in is limited per IP too
        newcomer = await sign_in(other)  # another address keeps its own budget
        assert (await other.get("/api/v1/users/profile", headers=newcomer.headers)).status_code == 200

"""REST calls are rate limited with a typed 429: signed-in calls per user, the rest per client IP
(IPv6 per /64; behind a trusted proxy, the client X-Forwarded-For names)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from roomserver.config import Settings
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.servers import run_app


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


async def test_signed_in_users_are_charged_to_themselves_and_failed_auth_to_the_ip(base_url: str) -> None:
    """Many users behind one address (a NAT, a proxy) each keep their own budget, well past the
    address's (burst 60); requests without a live session are charged to the address, which
    refuses them (and new sign-ins) once spent, and spares other addresses."""
    async with from_address(base_url, "127.0.0.3") as crowd, from_address(base_url, "127.0.0.2") as other:
        users = [await sign_in(crowd) for _ in range(8)]
        for turn in range(8 * 12):  # 96 requests from the address, 12 per user (burst 15)
            answer = await crowd.get("/api/v1/users/profile", headers=users[turn % 8].headers)
            assert answer.status_code == 200, (turn, answer.text)
        forged = {"Authorization": "Bearer not-a-session"}
        codes = [(await crowd.get("/api/v1/users/profile", headers=forged)).status_code for _ in range(90)]
        assert codes[0] == 401 and codes[-1] == 429, codes
        refused = await crowd.get("/api/v1/users/profile")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.json()["error"]["details"]["retry_after"] > 0
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await crowd.get("/api/v1/users/profile", headers=users[0].headers)).status_code == 200
        challenges = [await crowd.post("/api/v1/auth/siws/challenge", json={"address": users[0].wallet.address})
                      for _ in range(10)]  # (the address refills 4 a second)
        assert 429 in [c.status_code for c in challenges]  # signing in is unauthenticated work: the address pays
        newcomer = await sign_in(other)  # another address keeps its own budget
        assert (await other.get("/api/v1/users/profile", headers=newcomer.headers)).status_code == 200


PROXY = "127.0.0.5"


@pytest.fixture(scope="module")
async def proxied_url(settings: Settings) -> AsyncIterator[str]:
    """The app behind a trusted reverse proxy at PROXY (FORWARDED_ALLOW_IPS)."""
    port = free_port()
    proxied = dataclasses.replace(settings, port=port, public_origin=f"http://127.0.0.1:{port}",
                                  forwarded_allow_ips=f"{PROXY}, 10.0.0.0/8")
    async with run_app(proxied) as url:
        yield url


async def spend(client: httpx.AsyncClient, forwarded_for: str | None = None) -> list[int]:
    """Unauthenticated requests (charged to the client IP) until one is refused."""
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    codes = []
    for _ in range(120):
        codes.append((await client.get("/api/v1/users/profile", headers=headers)).status_code)
        if codes[-1] == 429:
            break
    return codes


async def anonymous(client: httpx.AsyncClient, forwarded_for: str) -> int:
    answer = await client.get("/api/v1/users/profile", headers={"X-Forwarded-For": forwarded_for})
    return answer.status_code


async def test_forwarded_for_is_believed_from_a_trusted_proxy_only(proxied_url: str) -> None:
    async with from_address(proxied_url, PROXY) as proxy, from_address(proxied_url, "127.0.0.6") as direct:
        assert (await spend(proxy, "203.0.113.9"))[-1] == 429
        assert await anonymous(proxy, "203.0.113.9") == 429  # that client is spent...
        assert await anonymous(proxy, "203.0.113.10") == 401  # ...not the proxy's other clients
        assert await anonymous(proxy, "198.51.100.1, 203.0.113.11") == 401  # the proxy's own hop counts

        assert (await spend(direct, "192.0.2.1"))[-1] == 429  # an untrusted peer is its own client
        assert await anonymous(direct, "192.0.2.2") == 429, "X-Forwarded-For from an untrusted peer was believed"


async def test_forwarded_for_is_ignored_without_trusted_proxies(base_url: str) -> None:
    """FORWARDED_ALLOW_IPS empty (the default): even loopback's X-Forwarded-For is not believed."""
    async with from_address(base_url, "127.0.0.1") as local:
        assert (await spend(local, "192.0.2.50"))[-1] == 429
        assert await anonymous(local, "192.0.2.51") == 429


async def test_ipv6_clients_share_a_bucket_per_64(proxied_url: str) -> None:
    async with from_address(proxied_url, PROXY) as proxy:
        assert (await spend(proxy, "2001:db8:1:2::1"))[-1] == 429
        assert await anonymous(proxy, "2001:db8:1:2:ffff:ffff:ffff:9") == 429  # same /64: rotating buys nothing
        assert await anonymous(proxy, "2001:db8:1:3::1") == 401  # the next /64 is another subscriber

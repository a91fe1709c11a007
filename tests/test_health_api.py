"""/health tells anonymous callers ok or degraded only; /health/detail is the operator's, behind
OPERATOR_TOKEN, with every URL redacted and the sponsor's balance; both are throttled per IP."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from roomserver.config import Settings
from roomserver.ledger.process import LedgerProcess
from roomserver.store.ports import free_port
from tests.clients import OPERATOR, health_detail
from tests.servers import run_app

SECRETS = ("SECRETPASS", "SECRETPATH", "SECRETKEY")


@pytest.fixture(scope="module")
def settings(settings: Settings, ledger: LedgerProcess) -> Settings:
    """An RPC URL carrying provider credentials the way hosted RPCs do, sponsored minting on."""
    scheme, rest = ledger.url.split("://", 1)
    rpc_url = f"{scheme}://provider:SECRETPASS@{rest}/v1/SECRETPATH?api-key=SECRETKEY"
    return dataclasses.replace(settings, solana_rpc_url=rpc_url, nft_mint_mode="sponsored",
                               rate_limit_per_minute=60)  # per IP: burst 60, 4 per second


async def test_public_health_says_ok_and_nothing_else(http: httpx.AsyncClient) -> None:
    answer = await http.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_detail_needs_the_operator_token(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        refused = await http.get("/health/detail", headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "operator_token_invalid"
        assert "components" not in refused.text


async def test_detail_redacts_urls_and_shows_the_fee_payer_balance(
        http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await health_detail(http)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["components"]) >= {"database", "redis", "solana"}
    assert all(c["ok"] for c in body["components"].values())
    solana = body["components"]["solana"]
    assert solana["detail"]["url"].startswith("http://***@127.0.0.1:")
    assert solana["detail"]["url"].endswith("/***")
    assert isinstance(body["sponsor"]["fee_payer_lamports"], int)
    assert body["sponsor"]["fee_payer_lamports"] >= 0  # read from the chain (topped up at the first mint)
    for secret in SECRETS:
        assert secret not in answer.text
        assert secret not in caplog.text, "a credential of SOLANA_RPC_URL reached the log"


async def test_public_health_is_throttled_per_ip(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30,
                                 transport=httpx.AsyncHTTPTransport(local_address="127.0.0.7")) as crowd:
        codes = [(await crowd.get("/health")).status_code for _ in range(90)]
        assert codes[0] == 200 and 429 in codes
        refused = await crowd.get("/health")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
    async with httpx.AsyncClient(base_url=base_url, timeout=30,
                                 transport=httpx.AsyncHTTPTransport(local_address="127.0.0.8")) as other:
        assert (await other.get("/health")).status_code == 200  # another address: its own budget


@pytest.fixture(scope="module")
async def tokenless_url(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    async with run_app(dataclasses.replace(settings, port=port, operator_token="",  # type: ignore[arg-type]
                                           public_origin=f"http://127.0.0.1:{port}")) as url:
        yield url


async def test_without_operator_token_there_is_no_detail(tokenless_url: str) -> None:
    async with httpx.AsyncClient(base_url=tokenless_url, timeout=30) as http:
        refused = await http.get("/health/detail", headers=OPERATOR)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "operator_disabled"
        assert (await http.get("/health")).json() == {"status": "ok"}

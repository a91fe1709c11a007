"""/ready is what a load balancer polls: red (503) while a required component (here the
broker's Redis; the object store: tests/test_blobs_health.py) is down and green again after,
while /health (liveness) stays 200, and an unreachable Solana RPC (optional unless
READY_REQUIRES names it) never pulls the node."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import httpx

from roomserver.config import Settings
from roomserver.store.ports import free_port
from tests.clients import OPERATOR
from tests.redis_fixtures import RedisServer
from tests.servers import run_app


async def until(http: httpx.AsyncClient, status: int, timeout: float = 20) -> httpx.Response:
    """Poll /ready until it answers `status`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await http.get("/ready")
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


def node(settings: Settings, **changes: object) -> Settings:
    port = free_port()
    return dataclasses.replace(settings, port=port, public_origin=f"http://127.0.0.1:{port}", **changes)  # type: ignore[arg-type]


async def test_ready_is_red_while_redis_is_down_and_health_stays_green(
        settings: Settings, redis_server: RedisServer) -> None:
    async with run_app(node(settings, redis_url=redis_server.url)) as url, \
            httpx.AsyncClient(base_url=url, timeout=30) as http:
        ready = await until(http, 200)
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}, ready.text
        detail = (await http.get("/ready", headers=OPERATOR)).json()
        assert detail["components"]["redis"] == {"ok": True, "required": True}
        assert detail["components"]["database"]["required"] is True
        assert detail["components"]["solana"]["required"] is False

        redis_server.stop()
        down = await until(http, 503)
        assert down.status_code == 503 and down.json() == {"status": "not_ready"}, down.text
        health = await http.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        detail = (await http.get("/ready", headers=OPERATOR)).json()
        assert detail["components"]["redis"] == {"ok": False, "required": True}
        assert (await http.get("/ready", headers={"Authorization": "Bearer wrong"})).json() == \
            {"status": "not_ready"}  # no detail without the operator token

        redis_server.start()
        assert (await until(http, 200)).status_code == 200


async def test_solana_is_required_only_when_configured(settings: Settings) -> None:
    dead_rpc = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with run_app(node(settings, solana_rpc_url=dead_rpc, solana_rpc_timeout_seconds=0.5)) as url, \
            httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.get("/ready", headers=OPERATOR)
        assert answer.status_code == 200, answer.text
        assert answer.json()["components"]["solana"] == {"ok": False, "required": False}
    async with run_app(node(settings, solana_rpc_url=dead_rpc, solana_rpc_timeout_seconds=0.5,
                            ready_requires=("solana",))) as url, \
            httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.get("/ready", headers=OPERATOR)
        assert answer.status_code == 503, answer.text
        assert answer.json()["components"]["solana"] == {"ok": False, "required": True}
        assert (await http.get("/health")).status_code == 200


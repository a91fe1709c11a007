"""GET /health (public: ok or degraded) and GET /health/detail (operator: every component).

`GET /health` answers `{"status": "ok"}` with 200 or `{"status": "degraded"}` with 503 and
nothing else: no URLs, ports, paths or probe errors. Its probes run at most once per
`PUBLIC_TTL` seconds however many ask (one run shared by concurrent callers), and each call
is charged to the caller's per-IP bucket, so an anonymous flood can neither amplify into
database, Redis and RPC traffic nor starve the other budgets.

`GET /health/detail` needs `Authorization: Bearer <OPERATOR_TOKEN>` (`guard.require_operator`,
enforced by the route wrapper: compared in constant time; a wrong or missing token is 401
`operator_token_invalid` and is charged to the IP; 403 `operator_disabled` while
OPERATOR_TOKEN is empty). It runs every probe now and
answers each component's `ok`, `mode`, `detail` and, in sponsored minting, the fee payer's
balance; the same 200/503 rule. A failed probe reports the exception's type only (the
message is logged, with URLs redacted): driver messages can carry hosts and credentials.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from roomserver.api.guard import app_state
from roomserver.api.http import Endpoint, client_key, reply
from roomserver.redact import redact_text
from roomserver.state import AppState, HealthCheck

log = logging.getLogger(__name__)

PUBLIC_TTL = 1.0
"""Seconds one run of the probes answers public `/health`."""
PROBE_TIMEOUT = 2.0


class Status(BaseModel):
    status: str
    """`ok` (HTTP 200) or `degraded` (HTTP 503: some component is down)."""


class ComponentHealth(BaseModel):
    ok: bool
    mode: str | None = None
    detail: dict[str, object] = {}


class Sponsor(BaseModel):
    fee_payer_lamports: int | None
    """What the sponsored-mint fee payer holds; None when it could not be read."""
    error: str | None = None


class HealthDetail(BaseModel):
    status: str
    components: dict[str, ComponentHealth]
    sponsor: Sponsor | None = None
    """Present in sponsored minting (NFT_MINT_MODE=sponsored)."""


class SharedProbe:
    """The probes' overall verdict, run at most once per `ttl` seconds (single flight)."""

    def __init__(self, ttl: float = PUBLIC_TTL) -> None:
        self.ttl = ttl
        self._at = -ttl
        self._ok = False
        self._running: asyncio.Task[bool] | None = None

    async def ok(self, checks: dict[str, HealthCheck]) -> bool:
        if time.monotonic() - self._at < self.ttl:
            return self._ok
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run(checks))
        return await asyncio.shield(self._running)

    async def _run(self, checks: dict[str, HealthCheck]) -> bool:
        results = await probe_all(checks)
        self._ok, self._at = all(r["ok"] for r in results.values()), time.monotonic()
        return self._ok


async def health(request: Request) -> Response:
    state = app_state(request)
    await state.ip_limiter.hit(client_key(request))
    shared: SharedProbe | None = getattr(request.app.state, "public_health", None)
    if shared is None:
        shared = request.app.state.public_health = SharedProbe()
    ok = await shared.ok(state.health_checks)
    return reply(Status(status="ok" if ok else "degraded"), status=200 if ok else 503)


async def health_detail(request: Request) -> Response:
    state = app_state(request)
    results = await probe_all(state.health_checks)
    components = {name: ComponentHealth(mode=state.modes.get(name), **result)
                  for name, result in results.items()}
    ok = all(c.ok for c in components.values())
    body = HealthDetail(status="ok" if ok else "degraded", components=components,
                        sponsor=await _sponsor(state))
    return reply(body, status=200 if ok else 503)


async def probe_all(checks: dict[str, HealthCheck]) -> dict[str, dict[str, Any]]:
    names = list(checks)
    results = await asyncio.gather(*(_probe(name, checks[name]) for name in names))
    return dict(zip(names, results, strict=True))


async def _probe(name: str, check: HealthCheck) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(check(), timeout=PROBE_TIMEOUT)
    except Exception as exc:  # a probe's failure is the answer, not an error
        log.warning("health probe %s failed: %s: %s", name, type(exc).__name__, redact_text(str(exc)))
        return {"ok": False, "detail": {"error": type(exc).__name__}}
    result.setdefault("detail", {})["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


async def _sponsor(state: AppState) -> Sponsor | None:
    if state.nft is None or state.settings.nft_mint_mode != "sponsored":
        return None
    try:
        return Sponsor(fee_payer_lamports=await state.nft.fee_payer_balance())
    except Exception as exc:
        log.warning("fee payer balance unavailable: %s: %s", type(exc).__name__, redact_text(str(exc)))
        return Sponsor(fee_payer_lamports=None, error=type(exc).__name__)


ENDPOINTS = [
    Endpoint("GET", "/health", health, "ok (200) or degraded (503); nothing else", "operations",
             response=Status, auth=False, errors=(429, 503)),
    Endpoint("GET", "/health/detail", health_detail,
             "Every component's state (Authorization: Bearer <OPERATOR_TOKEN>)", "operations",
             response=HealthDetail, auth=False, operator=True, errors=(503,)),
]

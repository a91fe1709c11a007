"""GET /health (liveness), GET /ready (readiness) and GET /health/detail (operator detail).

`GET /health` is liveness: `{"status": "ok"}` with 200 whenever the process serves HTTP; it
probes nothing, so a flaky dependency never gets a node restarted or pulled.

`GET /ready` is readiness, for load balancers: 200 `{"status": "ready"}` when every REQUIRED
component's probe passes, else 503 `{"status": "not_ready"}`, and nothing else: no URLs,
ports, paths or probe errors. Required: every component except the optional ones (`solana`,
`library`: the RPC and the embedding model) unless READY_REQUIRES names them, so the
database, the broker subscriber (`redis`) and the object store (`blobs`) always are. Its
probes run at most once per `PUBLIC_TTL` seconds however many ask (one run shared by
concurrent callers). With the operator token (`guard.is_operator`) it also answers each
component's `ok` and `required`.

Both public endpoints are charged to the caller's per-IP bucket, so an anonymous flood can
neither amplify into database, Redis and RPC traffic nor starve the other budgets.

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

from roomserver.api.guard import app_state, is_operator
from roomserver.api.http import Endpoint, client_key, reply
from roomserver.observe.redact import redact_text
from roomserver.state import AppState, HealthCheck

log = logging.getLogger(__name__)

PUBLIC_TTL = 1.0
"""Seconds one run of the probes answers public `/ready`."""
PROBE_TIMEOUT = 2.0
OPTIONAL = frozenset({"solana", "library"})
"""Components `/ready` reports but does not require unless READY_REQUIRES names them."""


class Status(BaseModel):
    status: str
    """`ok`: the process serves."""


class ComponentReadiness(BaseModel):
    ok: bool
    required: bool


class Readiness(BaseModel):
    status: str
    """`ready` (HTTP 200) or `not_ready` (HTTP 503: a required component is down)."""
    components: dict[str, ComponentReadiness] | None = None
    """Only for the operator (Authorization: Bearer <OPERATOR_TOKEN>)."""


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
    """The probes' verdicts, run at most once per `ttl` seconds (single flight)."""

    def __init__(self, ttl: float = PUBLIC_TTL) -> None:
        self.ttl = ttl
        self._at = -ttl
        self._results: dict[str, bool] = {}
        self._running: asyncio.Task[dict[str, bool]] | None = None

    async def results(self, checks: dict[str, HealthCheck]) -> dict[str, bool]:
        """Each component's `ok`, from a run at most `ttl` seconds old."""
        if time.monotonic() - self._at < self.ttl:
            return self._results
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run(checks))
        return await asyncio.shield(self._running)

    async def _run(self, checks: dict[str, HealthCheck]) -> dict[str, bool]:
        results = await probe_all(checks)
        self._results = {name: bool(r["ok"]) for name, r in results.items()}
        self._at = time.monotonic()
        return self._results


async def health(request: Request) -> Response:
    """Liveness: answering at all is the answer."""
    await app_state(request).ip_limiter.hit(client_key(request))
    return reply(Status(status="ok"))


def required(name: str, state: AppState) -> bool:
    return name not in OPTIONAL or name in state.settings.ready_requires


async def ready(request: Request) -> Response:
    state = app_state(request)
    await state.ip_limiter.hit(client_key(request))
    shared: SharedProbe | None = getattr(request.app.state, "readiness", None)
    if shared is None:
        shared = request.app.state.readiness = SharedProbe()
    results = await shared.results(state.health_checks)
    ok = all(up for name, up in results.items() if required(name, state))
    body = Readiness(status="ready" if ok else "not_ready")
    if is_operator(request):
        body.components = {name: ComponentReadiness(ok=up, required=required(name, state))
                           for name, up in results.items()}
    return reply(body.model_dump(mode="json", exclude_none=True), status=200 if ok else 503)


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
    Endpoint("GET", "/health", health, "Liveness: ok (200) while the process serves", "operations",
             response=Status, auth=False, errors=(429,)),
    Endpoint("GET", "/ready", ready,
             "Readiness: ready (200) or not_ready (503); each component for the operator",
             "operations", response=Readiness, auth=False, errors=(429, 503)),
    Endpoint("GET", "/health/detail", health_detail,
             "Every component's state (Authorization: Bearer <OPERATOR_TOKEN>)", "operations",
             response=HealthDetail, auth=False, operator=True, errors=(503,)),
]

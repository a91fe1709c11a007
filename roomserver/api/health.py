"""GET /health: the state of every component, 503 when any is down."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from roomserver.api.guard import app_state
from roomserver.api.http import Endpoint, reply


class ComponentHealth(BaseModel):
    ok: bool
    mode: str | None = None
    detail: dict[str, object] = {}


class Health(BaseModel):
    status: str
    components: dict[str, ComponentHealth]


async def health(request: Request) -> Response:
    state = app_state(request)
    names = list(state.health_checks)
    results = await asyncio.gather(*(_probe(state.health_checks[n]) for n in names))
    components = {}
    for name, result in zip(names, results, strict=True):
        components[name] = ComponentHealth(mode=state.modes.get(name), **result)
    ok = all(c.ok for c in components.values())
    body = Health(status="ok" if ok else "degraded", components=components)
    return reply(body, status=200 if ok else 503)


async def _probe(check) -> dict[str, object]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(check(), timeout=2.0)
    except Exception as exc:  # a probe's failure is the answer, not an error
        return {"ok": False, "detail": {"error": type(exc).__name__, "message": str(exc)[:200]}}
    result.setdefault("detail", {})["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


ENDPOINTS = [
    Endpoint("GET", "/health", health, "State of every component", "operations",
             response=Health, auth=False, errors=(503,)),
]

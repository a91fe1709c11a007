"""GET /metrics: the Prometheus text exposition of this node (every worker's, aggregated,
under `serve --workers N`). Open like /health and charged to the caller's per-IP bucket: no
label names a user, room or path."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from roomserver.api.guard import app_state
from roomserver.api.http import Endpoint, client_key
from roomserver.observe.metrics import CONTENT_TYPE


async def metrics(request: Request) -> Response:
    state = app_state(request)
    await state.ip_limiter.hit(client_key(request))
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


ENDPOINTS = [
    Endpoint("GET", "/metrics", metrics, "Prometheus metrics (text exposition format)",
             "operations", auth=False, errors=(429,), produces="text/plain"),
]

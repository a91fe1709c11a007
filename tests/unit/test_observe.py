"""The edge's observation middleware in-process: request ids honoured when sane, echoed, set
in the log context; HTTP metrics by route template, never by path."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from roomserver.api.observe import Observe
from roomserver.observe import logs
from roomserver.observe.metrics import Metrics


def app(metrics: Metrics) -> Starlette:
    async def room(request: Request) -> PlainTextResponse:
        return PlainTextResponse(logs.request_id.get() or "")

    return Starlette(routes=[Route("/rooms/{room_id}", room)],
                     middleware=[Middleware(Observe, metrics=metrics)])


def labels(metrics: Metrics, name: str) -> list[dict[str, str]]:
    text = metrics.render().decode()
    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def test_request_ids_and_route_templates() -> None:
    metrics = Metrics()
    with TestClient(app(metrics)) as client:
        given = client.get(f"/rooms/{uuid.uuid4()}", headers={"X-Request-ID": "abc-1"})
        assert given.text == "abc-1" and given.headers["x-request-id"] == "abc-1"
        made = client.get(f"/rooms/{uuid.uuid4()}", headers={"X-Request-ID": "x" * 200})
        assert made.headers["x-request-id"] == made.text and len(made.text) == 32
        assert client.get("/elsewhere/1").status_code == 404
        assert client.request("BREW", "/rooms/1").status_code == 405
    counted = labels(metrics, "roomserver_http_requests_total")
    assert {"route": "/rooms/{room_id}", "method": "GET", "status": "200"} in counted
    assert {"route": "unmatched", "method": "GET", "status": "404"} in counted
    assert {"route": "/rooms/{room_id}", "method": "other", "status": "405"} in counted
    assert len(counted) == 3  # two different room ids: one series
    assert logs.request_id.get() is None  # reset after each request

"""The operator guard, enforced by the route wrapper: an `operator=True` endpoint never runs
without `Authorization: Bearer <OPERATOR_TOKEN>`, and is off (403) while the token is unset."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from roomserver import errors
from roomserver.api.guard import authenticate, require_operator
from roomserver.api.http import Endpoint, error_response, reply, routes
from roomserver.config import Settings
from roomserver.ratelimit import MemoryLimiter

TOKEN = "op-secret-123"


def make_app(token: str, ran: list[str]) -> Starlette:
    async def action(request: Request) -> Response:
        ran.append("action")
        return reply({"done": True})

    endpoints = [Endpoint("POST", "/op", action, "an operator action", "t", auth=False, operator=True)]
    state = SimpleNamespace(settings=Settings.from_env({}, operator_token=token),
                            ip_limiter=MemoryLimiter(rate=1000, burst=1000))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"rs": state}

    async def typed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.RoomserverError)
        return error_response(exc)

    return Starlette(routes=routes(endpoints, authenticate, require_operator), lifespan=lifespan,
                     exception_handlers={errors.RoomserverError: typed})


def _code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}
    return str(response.json()["error"]["code"])


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
def api(ran: list[str]) -> Iterator[TestClient]:
    with TestClient(make_app(TOKEN, ran)) as client:
        yield client


def test_without_the_token_the_action_never_runs(api: TestClient, ran: list[str]) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": "Bearer rs_session"}):
        assert _code(api.post("/op", headers=headers), 401) == "operator_token_invalid"
    assert ran == []
    assert api.post("/op", headers={"Authorization": f"Bearer {TOKEN}"}).json() == {"done": True}
    assert ran == ["action"]


def test_an_unset_token_turns_the_endpoints_off(ran: list[str]) -> None:
    with TestClient(make_app("", ran)) as api:
        assert _code(api.post("/op", headers={"Authorization": "Bearer "}), 403) == "operator_disabled"
        assert _code(api.post("/op"), 403) == "operator_disabled"
    assert ran == []


def test_an_operator_endpoint_needs_a_guard() -> None:
    async def action(request: Request) -> Response:
        return reply({})

    with pytest.raises(ValueError, match="authorize_operator"):
        routes([Endpoint("GET", "/op", action, "s", "t", auth=False, operator=True)], authenticate)

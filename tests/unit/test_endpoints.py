"""Endpoint declarations are enforced by the route wrapper, not left to each handler: an
`auth=True` endpoint never runs without a valid session, a declared JSON body is parsed and
validated before the handler sees the request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from roomserver import errors
from roomserver.api.guard import authenticate, require_user
from roomserver.api.http import Endpoint, error_response, read_body, reply, routes
from roomserver.identity.sessions import TOKEN_PREFIX, Session
from roomserver.ratelimit import MemoryLimiter

TOKEN = TOKEN_PREFIX + "live"


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10)


class Sessions:
    """Stands in for SessionStore at its boundary: one live token."""

    def __init__(self) -> None:
        self.session = Session(id=uuid.uuid4(), user_id=uuid.uuid4(), wallet_address="w",
                               expires_at=datetime.now(UTC) + timedelta(hours=1))
        self.resolved = 0

    async def resolve(self, token: str) -> Session | None:
        self.resolved += 1
        return self.session if token == TOKEN else None


class World:
    def __init__(self) -> None:
        self.sessions = Sessions()
        self.ran: list[str] = []
        self.seen: dict[str, Any] = {}


def make_app(world: World) -> Starlette:
    async def forgetful(request: Request) -> Response:
        """Declared authenticated, but never asks for the user."""
        world.ran.append("forgetful")
        return reply({"secret": True})

    async def careful(request: Request) -> Response:
        world.ran.append("careful")
        world.seen["session"] = await require_user(request)
        return reply({"user_id": str(world.seen["session"].user_id)})

    async def post_note(request: Request) -> Response:
        world.ran.append("post_note")
        note = await read_body(request, Note)
        world.seen["note"], world.seen["state_body"] = note, request.state.body
        return reply(note)

    async def public(request: Request) -> Response:
        world.ran.append("public")
        return reply({"public": True})

    endpoints = [
        Endpoint("GET", "/forgetful", forgetful, "forgets require_user", "t"),
        Endpoint("GET", "/careful", careful, "asks for the user", "t"),
        Endpoint("POST", "/notes", post_note, "a declared body", "t", body=Note),
        Endpoint("POST", "/open-notes", post_note, "a declared body, no auth", "t", body=Note, auth=False),
        Endpoint("GET", "/public", public, "no auth", "t", auth=False),
    ]
    state = SimpleNamespace(sessions=world.sessions, ip_limiter=MemoryLimiter(rate=1000, burst=1000),
                            user_limiter=MemoryLimiter(rate=1000, burst=1000))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"rs": state}

    async def typed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.RoomserverError)
        return error_response(exc)

    return Starlette(routes=routes(endpoints, authenticate), lifespan=lifespan,
                     exception_handlers={errors.RoomserverError: typed})


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def api(world: World) -> TestClient:
    with TestClient(make_app(world)) as test_client:
        yield test_client


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


def test_a_declared_auth_endpoint_without_a_token_is_a_typed_401_even_if_the_handler_forgot(
        api: TestClient, world: World) -> None:
    assert _error(api.get("/forgetful"), 401) == "not_authenticated"
    assert _error(api.get("/forgetful", headers={"Authorization": "Basic abc"}), 401) == "not_authenticated"
    assert _error(api.get("/forgetful", headers={"Authorization": f"Bearer {TOKEN}x"}), 401) == "session_invalid"
    assert world.ran == []
    assert api.get("/forgetful", headers={"Authorization": f"Bearer {TOKEN}"}).json() == {"secret": True}
    assert world.ran == ["forgetful"]


def test_the_handler_gets_the_session_the_wrapper_checked(api: TestClient, world: World) -> None:
    answer = api.get("/careful", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.json() == {"user_id": str(world.sessions.session.user_id)}
    assert world.seen["session"] is world.sessions.session
    assert world.sessions.resolved == 1  # checked once, by the wrapper: not again by require_user


def test_auth_comes_before_the_body(api: TestClient, world: World) -> None:
    assert _error(api.post("/notes", content=b"{not json"), 401) == "not_authenticated"
    assert world.ran == []


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "invalid_json"),
    (b'{"text": ""}', "validation_error"),
    (b'{"text": "ok", "extra": 1}', "validation_error"),
    (b"[1, 2]", "validation_error"),
])
def test_a_declared_body_is_validated_before_the_handler_runs(api: TestClient, world: World,
                                                              body: bytes, code: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    assert _error(api.post("/notes", content=body, headers=auth), 400) == code
    assert _error(api.post("/open-notes", content=body, headers=auth), 400) == code
    assert world.ran == []


def test_the_handler_reads_the_body_the_wrapper_parsed(api: TestClient, world: World) -> None:
    answer = api.post("/notes", json={"text": "hello"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.json() == {"text": "hello"}
    assert world.seen["note"] is world.seen["state_body"]  # parsed once


def test_endpoints_declared_open_run_without_a_session(api: TestClient, world: World) -> None:
    assert api.get("/public").json() == {"public": True}
    assert api.post("/open-notes", json={"text": "hi"}).json() == {"text": "hi"}
    assert world.ran == ["public", "post_note"] and world.sessions.resolved == 0

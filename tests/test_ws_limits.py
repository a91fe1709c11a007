"""Socket admission limits: every handshake is charged to the client IP, open sockets are capped
per user and per IP (typed 429 before accept, close 4005 after an `auth` frame), and a run of
invalid frames ends in the flood close (4004) like a run of rate-limited ones."""

from __future__ import annotations

import dataclasses

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roomserver.config import Settings
from roomserver.errors import CloseCode
from tests.clients import SignedInUser, sign_in
from tests.ws_client import RoomClient, create_room, ws_url

PER_USER, PER_IP = 3, 5


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, rate_limit_per_minute=60,  # per IP: burst 60, 4 a second
                               ws_sockets_per_user=PER_USER, ws_sockets_per_ip=PER_IP)


def client_from(base_url: str, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def refusal(url: str, address: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    protocols = ["roomserver.v1", *([f"bearer.{token}"] if token else [])]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=protocols, local_addr=(address, 0), open_timeout=10):  # type: ignore[arg-type]
            pass
    return refused.value.response.status_code, orjson.loads(refused.value.response.body or b"{}")


async def test_handshakes_are_charged_to_the_ip(base_url: str) -> None:
    async with client_from(base_url, "127.0.0.21") as http:
        owner = await sign_in(http)
        room = await create_room(http, owner)
    url = ws_url(base_url, room)
    statuses = []
    for _ in range(90):  # unauthenticated handshakes (a forged token) from one address
        status, body = await refusal(url, "127.0.0.22", token="forged")
        statuses.append((status, body["error"]["code"]))  # type: ignore[index]
        if status == 429:
            break
    assert statuses[0] == (401, "session_invalid") and statuses[-1] == (429, "rate_limited"), statuses
    other = await RoomClient.open(base_url, owner, room, local_addr=("127.0.0.23", 0))  # another address
    await other.close()


async def test_sockets_per_user_are_capped(base_url: str) -> None:
    async with client_from(base_url, "127.0.0.31") as http:
        user = await sign_in(http)
        room = await create_room(http, user)
    held = [await RoomClient.open(base_url, user, room, local_addr=(f"127.0.0.{32 + i}", 0)) for i in range(PER_USER)]
    try:
        status, body = await refusal(ws_url(base_url, room), "127.0.0.36", token=user.token)
        assert status == 429 and body["error"]["code"] == "too_many_sockets"  # type: ignore[index]
        async with connect(ws_url(base_url, room), subprotocols=["roomserver.v1"],  # type: ignore[list-item]
                           local_addr=("127.0.0.37", 0)) as late:  # the cap after an auth frame
            await late.send(orjson.dumps({"type": "auth", "token": user.token}).decode())
            error = orjson.loads(await late.recv())
            assert error["type"] == "error" and error["code"] == "too_many_sockets"
            await late.wait_closed()
            assert late.close_code == CloseCode.TOO_MANY_SOCKETS
        await held.pop().close()
        again = await RoomClient.open(base_url, user, room, local_addr=("127.0.0.38", 0))  # a place is free
        held.append(again)
    finally:
        for client in held:
            await client.close()


async def test_sockets_per_ip_are_capped_whoever_opens_them(base_url: str) -> None:
    async with client_from(base_url, "127.0.0.41") as http:
        users: list[SignedInUser] = [await sign_in(http) for _ in range(PER_IP + 1)]
        room = await create_room(http, users[0])
    held = [await RoomClient.open(base_url, u, room, local_addr=("127.0.0.42", 0)) for u in users[:PER_IP]]
    try:
        status, body = await refusal(ws_url(base_url, room), "127.0.0.42", token=users[-1].token)
        assert status == 429 and body["error"]["code"] == "too_many_sockets"  # type: ignore[index]
        elsewhere = await RoomClient.open(base_url, users[-1], room, local_addr=("127.0.0.43", 0))
        await elsewhere.close()
    finally:
        for client in held:
            await client.close()


async def test_repeated_invalid_frames_close_the_socket_as_a_flood(base_url: str) -> None:
    async with client_from(base_url, "127.0.0.51") as http:
        user = await sign_in(http)
        room = await create_room(http, user)
    socket = await RoomClient.open(base_url, user, room, local_addr=("127.0.0.52", 0))
    for n in range(40):
        await socket.conn.send("{not json" if n % 2 else '{"type":"no_such_frame"}')
    assert await socket.closed_with() == CloseCode.FLOOD
    errors = [f for f in socket.frames if f["type"] == "error"]
    assert errors and {f["code"] for f in errors} <= {"invalid_json", "invalid_frame", "unknown_type"}

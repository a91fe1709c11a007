"""Operator endpoints on two real nodes sharing one Postgres and one Redis: each refuses
without OPERATOR_TOKEN, each action reaches the sockets of both nodes, and each is audited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from roomserver.errors import CloseCode
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.redis_fixtures import RedisServer
from tests.servers import run_process
from tests.ws_client import RoomClient, create_room

TOKEN = "operator-test-token-8f2c"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nodes(database_url: str, redis: RedisServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    port_a = free_port()
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis.url, "OPERATOR_TOKEN": TOKEN,
            "PUBLIC_ORIGIN": f"http://127.0.0.1:{port_a}", "LOG_LEVEL": "warning",
            "PRESENCE_TTL_SECONDS": "3", "PRESENCE_LEAVE_GRACE_MS": "300"}
    logs = tmp_path_factory.mktemp("operator-logs")
    with contextlib.ExitStack() as stack:
        a, _ = stack.enter_context(run_process(
            {**base, "DATA_DIR": str(tmp_path_factory.mktemp("op-a"))}, port=port_a,
            log=Path(logs / "a.log")))
        b, _ = stack.enter_context(run_process(
            {**base, "DATA_DIR": str(tmp_path_factory.mktemp("op-b"))}, log=Path(logs / "b.log")))
        yield a, b


@pytest.fixture
async def http(nodes: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nodes[0], timeout=30) as client:
        yield client


async def _audit(database_url: str, action: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT actor_id, target_id, data, ip FROM audit_log WHERE action = $1",
                                action)
    finally:
        await conn.close()
    return [{**r, "data": orjson.loads(r["data"])} for r in rows]


async def _poll(fetch: Any, ok: Any, timeout: float = 15) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            value = await fetch()
            if ok(value):
                return value
            await asyncio.sleep(0.2)


OPERATIONS = [("GET", "/api/v1/operator/rooms", None),
              ("POST", "/api/v1/operator/users/{user}/disconnect", None),
              ("POST", "/api/v1/operator/rooms/{room}/close", None),
              ("POST", "/api/v1/operator/broadcast", {"text": "hello"})]


async def test_every_operator_endpoint_refuses_without_the_token(
        http: httpx.AsyncClient, database_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    for method, path, body in OPERATIONS:
        url = path.format(user=alice.user_id, room=room)
        for headers in ({}, alice.headers, {"Authorization": f"Bearer {TOKEN}-not"}):
            answer = await http.request(method, url, headers=headers, json=body)
            assert answer.status_code == 401, (url, answer.text)
            assert answer.json()["error"]["code"] == "operator_token_invalid"
    assert (await http.get(f"/api/v1/rooms/{room}", headers=alice.headers)).json()["is_active"] is True
    assert await _audit(database_url, "operator.broadcast") == []


async def test_live_rooms_count_the_users_of_each_node(http: httpx.AsyncClient,
                                                       nodes: tuple[str, str]) -> None:
    alice, bob, carol = [await sign_in(http) for _ in range(3)]
    room = await create_room(http, alice)
    sockets = [await RoomClient.open(nodes[0], alice, room), await RoomClient.open(nodes[1], bob, room),
               await RoomClient.open(nodes[1], carol, room), await RoomClient.open(nodes[1], carol, room)]

    async def listing() -> dict[str, Any]:
        answer = await http.get("/api/v1/operator/rooms", headers=OPERATOR)
        assert answer.status_code == 200, answer.text
        return {r["room_id"]: r for r in answer.json()["rooms"]}

    live = await _poll(listing, lambda rooms: rooms.get(room, {}).get("members") == 3)
    assert sorted(live[room]["nodes"].values()) == [1, 2]  # alice on A; bob and carol (two tabs) on B
    async with httpx.AsyncClient(base_url=nodes[1], timeout=30) as other:
        on_b = (await other.get("/api/v1/operator/rooms", headers=OPERATOR)).json()
    assert {r["room_id"]: r["nodes"] for r in on_b["rooms"]}[room] == live[room]["nodes"]
    for socket in sockets:
        await socket.close()
    await _poll(listing, lambda rooms: room not in rooms)


async def test_disconnect_closes_the_users_sockets_on_both_nodes(
        http: httpx.AsyncClient, nodes: tuple[str, str], database_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, bob)
    on_a, on_b = await RoomClient.open(nodes[0], alice, room), await RoomClient.open(nodes[1], alice, room)
    bystander = await RoomClient.open(nodes[1], bob, room)
    async with httpx.AsyncClient(base_url=nodes[1], timeout=30) as other:
        answer = await other.post(f"/api/v1/operator/users/{alice.user_id}/disconnect", headers=OPERATOR)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sessions_revoked"] == 1
    assert await on_a.closed_with(timeout=15) == CloseCode.SESSION_REVOKED
    assert await on_b.closed_with(timeout=15) == CloseCode.SESSION_REVOKED
    assert (await http.get("/api/v1/rooms", headers=alice.headers)).status_code == 401
    assert (await http.get("/api/v1/rooms", headers=bob.headers)).status_code == 200
    ack = await bystander.request(type="chat_message", text="still here", client_msg_id="b1")
    assert ack["type"] == "ack"
    [row] = await _audit(database_url, "operator.user_disconnect")
    assert row["actor_id"] is None and row["target_id"] == alice.user_id and row["ip"] is not None
    missing = await http.post("/api/v1/operator/users/00000000-0000-0000-0000-000000000000/disconnect",
                              headers=OPERATOR)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "user_not_found"
    await bystander.close()


async def test_close_room_closes_every_nodes_sockets(http: httpx.AsyncClient, nodes: tuple[str, str],
                                                     database_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice, room_type="private")
    on_a = await RoomClient.open(nodes[0], alice, room)
    invited = await http.post(f"/api/v1/rooms/{room}/invitations", headers=alice.headers,
                              json={"user_id": bob.user_id})
    assert invited.status_code == 201, invited.text
    on_b = await RoomClient.open(nodes[1], bob, room)
    answer = await http.post(f"/api/v1/operator/rooms/{room}/close", headers=OPERATOR)
    assert answer.status_code == 200, answer.text
    assert answer.json()["is_active"] is False
    assert await on_a.closed_with(timeout=15) == CloseCode.ROOM_CLOSED
    assert await on_b.closed_with(timeout=15) == CloseCode.ROOM_CLOSED
    assert (await http.get(f"/api/v1/rooms/{room}", headers=bob.headers)).json()["is_active"] is False
    [row] = await _audit(database_url, "operator.room_close")
    assert row["actor_id"] is None and row["target_id"] == room and row["data"] == {"was_open": True}
    unknown = await http.post("/api/v1/operator/rooms/not-a-room/close", headers=OPERATOR)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "room_not_found"


async def test_broadcast_is_a_durable_system_message_in_every_open_room(
        http: httpx.AsyncClient, nodes: tuple[str, str], database_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room_1, room_2 = await create_room(http, alice), await create_room(http, bob)
    on_a, on_b = await RoomClient.open(nodes[0], alice, room_1), await RoomClient.open(nodes[1], bob, room_2)
    async with httpx.AsyncClient(base_url=nodes[1], timeout=30) as other:
        answer = await other.post("/api/v1/operator/broadcast", headers=OPERATOR,
                                  json={"text": "maintenance at 23:00 UTC"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rooms"] >= 2

    def system(frame: dict[str, Any]) -> bool:
        return frame["type"] == "new_message" and frame["message"]["kind"] == "system"

    for socket, room in ((on_a, room_1), (on_b, room_2)):
        frame = await socket.wait_for(system, timeout=15)
        assert frame["message"]["text"] == "maintenance at 23:00 UTC" and frame["room_id"] == room
        assert frame["message"]["metadata"] == {"operator": True}
        again = await RoomClient.open(nodes[1], alice if room == room_1 else bob, room, last_seq=0)
        await again.wait_for(lambda f: f["type"] == "recovered")
        assert [f["seq"] for f in again.durable() if system(f)] == [frame["seq"]]
        await again.close()
        await socket.close()
    [row] = await _audit(database_url, "operator.broadcast")
    assert row["data"]["rooms"] == answer.json()["rooms"] and "text" not in row["data"]
    empty = await http.post("/api/v1/operator/broadcast", headers=OPERATOR, json={"text": ""})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "validation_error"

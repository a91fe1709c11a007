"""Removal from a room reaches every socket on every node: two real server processes on one
Postgres and one Redis. A REST ban closes the banned member's sockets on both nodes with
4102, a room close closes everyone's with 4104, a REST leave closes the leaver's with 1000;
nothing the removed member sends afterwards is stored."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.errors import CloseCode
from roomserver.store.ports import free_port
from tests.clients import SignedInUser, sign_in
from tests.redis_fixtures import RedisServer
from tests.servers import run_process
from tests.ws_client import RoomClient, create_room


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nodes(database_url: str, redis: RedisServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    port_a, port_b = free_port(), free_port()
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis.url,
            "PUBLIC_ORIGIN": f"http://127.0.0.1:{port_a}", "PRESENCE_LEAVE_GRACE_MS": "300",
            "WS_CHAT_PER_MINUTE": "1000000", "LOG_LEVEL": "warning"}
    logs = tmp_path_factory.mktemp("logs")
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, port in (("a", port_a), ("b", port_b)):
            env = {**base, "DATA_DIR": str(tmp_path_factory.mktemp(f"node-{name}"))}
            urls[name], _ = stack.enter_context(run_process(env, port=port, log=Path(logs / f"{name}.log")))
        yield urls


@pytest.fixture
async def api(nodes: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nodes["a"], timeout=30) as client:
        yield client


async def _joined(api: httpx.AsyncClient, user: SignedInUser, room: str) -> None:
    answer = await api.post(f"/api/v1/rooms/{room}/join", headers=user.headers)
    assert answer.status_code == 200, answer.text


async def _stored_ids(api: httpx.AsyncClient, reader: SignedInUser, room: str) -> set[str]:
    page = (await api.get(f"/api/v1/rooms/{room}/messages", params={"limit": 200},
                          headers=reader.headers)).json()
    return {m["client_msg_id"] for m in page["messages"] if m["client_msg_id"]}


async def test_a_rest_ban_closes_the_members_sockets_on_both_nodes_and_refuses_their_frames(
        api: httpx.AsyncClient, nodes: dict[str, str]) -> None:
    owner, mallory, watcher = await sign_in(api), await sign_in(api), await sign_in(api)
    room = await create_room(api, owner)
    await _joined(api, mallory, room)
    tabs = [await RoomClient.open(nodes[n], mallory, room) for n in ("a", "b")]
    seen = await RoomClient.open(nodes["b"], watcher, room)
    before = await tabs[0].request(type="chat_message", text="before", client_msg_id="before")
    assert before["type"] == "ack"

    # a stream of frames from both tabs races the ban: nothing acked may be lost
    async def chatter(tab: RoomClient, prefix: str) -> None:
        with contextlib.suppress(Exception):
            for i in range(400):
                await tab.send(type="chat_message", text=f"{prefix}{i}", client_msg_id=f"{prefix}{i}")
                await asyncio.sleep(0.002)

    racers = [asyncio.create_task(chatter(tab, f"race-{n}-")) for n, tab in zip("ab", tabs, strict=True)]
    readers = [asyncio.create_task(tab.closed_with(timeout=30)) for tab in tabs]  # read like a browser
    await asyncio.sleep(0.1)
    banned = await api.post(f"/api/v1/rooms/{room}/bans", headers=owner.headers,
                            json={"user_id": mallory.user_id, "reason": "spam"})
    assert banned.status_code == 201, banned.text
    at = time.monotonic()
    after = []
    for n, tab in zip("ab", tabs, strict=True):  # sent after the ban was committed
        with contextlib.suppress(Exception):
            await asyncio.wait_for(tab.send(type="chat_message", text="after", client_msg_id=f"after-{n}"), 0.5)
            after.append(f"after-{n}")
    codes = await asyncio.wait_for(asyncio.gather(*readers), 5)
    assert codes == [CloseCode.BANNED, CloseCode.BANNED]
    assert time.monotonic() - at < 2, "closed on both nodes within 2 s of the ban"
    await asyncio.gather(*racers)

    stored = await _stored_ids(api, owner, room)
    acked = {f["client_msg_id"] for tab in tabs for f in tab.frames if f["type"] == "ack"}
    assert "before" in stored and acked <= stored, "an acked frame was lost"
    assert not stored & {"after-a", "after-b"}, "a frame sent after the ban was stored"
    assert not {f.get("client_msg_id") for tab in tabs for f in tab.frames if f["type"] == "ack"} & set(after)
    left = await seen.wait_for(lambda f: f["type"] == "user_left" and f["user_id"] == mallory.user_id)
    assert left["reason"] == "banned"
    refused = await api.post(f"/api/v1/rooms/{room}/join", headers=mallory.headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "banned"
    await seen.close()


async def test_a_rest_room_close_closes_every_members_socket_with_4104(
        api: httpx.AsyncClient, nodes: dict[str, str]) -> None:
    owner, bob = await sign_in(api), await sign_in(api)
    room = await create_room(api, owner)
    await _joined(api, bob, room)
    sockets = [await RoomClient.open(nodes["a"], owner, room), await RoomClient.open(nodes["b"], owner, room),
               await RoomClient.open(nodes["a"], bob, room), await RoomClient.open(nodes["b"], bob, room)]
    closed = await api.delete(f"/api/v1/rooms/{room}", headers=owner.headers)
    assert closed.status_code == 200 and closed.json()["is_active"] is False
    codes = await asyncio.wait_for(asyncio.gather(*(s.closed_with(timeout=2) for s in sockets)), 2.5)
    assert codes == [CloseCode.ROOM_CLOSED] * 4


async def test_a_rest_leave_closes_the_leavers_sockets(api: httpx.AsyncClient, nodes: dict[str, str]) -> None:
    owner, bob = await sign_in(api), await sign_in(api)
    room = await create_room(api, owner)
    await _joined(api, bob, room)
    stay = await RoomClient.open(nodes["a"], owner, room)
    tabs = [await RoomClient.open(nodes[n], bob, room) for n in ("a", "b")]
    await stay.wait_for(lambda f: f["type"] == "user_joined" and f["user"]["user_id"] == bob.user_id)
    left = await api.post(f"/api/v1/rooms/{room}/leave", headers=bob.headers)
    assert left.status_code == 200, left.text
    codes = await asyncio.wait_for(asyncio.gather(*(t.closed_with(timeout=2) for t in tabs)), 2.5)
    assert codes == [CloseCode.NORMAL, CloseCode.NORMAL]
    notice = await stay.wait_for(lambda f: f["type"] == "user_left" and f["user_id"] == bob.user_id)
    assert notice["reason"] == "left"
    ack = await stay.request(type="chat_message", text="still here", client_msg_id="stay-1")
    assert ack["type"] == "ack"  # the others are untouched
    await asyncio.sleep(0.6)  # past the leave grace: no second user_left
    assert [f for f in stay.frames if f["type"] == "user_left"] == [notice]
    await stay.close()

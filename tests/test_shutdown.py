"""Graceful shutdown: on SIGTERM a node tells its sockets to reconnect, loses nothing it acked,
and its clients resume on another node."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.errors import CloseCode
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.redis_fixtures import RedisServer
from tests.servers import run_process
from tests.ws_client import RoomClient, create_room


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def test_sigterm_drains_to_the_other_node(database_url: str, redis: RedisServer,
                                                tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis.url, "LOG_LEVEL": "warning",
            "PUBLIC_ORIGIN": f"http://127.0.0.1:{port_a}", "WS_CHAT_PER_MINUTE": "100000"}
    with contextlib.ExitStack() as stack:
        url_a, proc_a = stack.enter_context(run_process(
            {**base, "DATA_DIR": str(tmp_path / "a")}, port=port_a, log=tmp_path / "a.log"))
        url_b, _ = stack.enter_context(run_process(
            {**base, "DATA_DIR": str(tmp_path / "b")}, port=port_b, log=tmp_path / "b.log"))
        async with httpx.AsyncClient(base_url=url_a, timeout=30) as http:
            alice = await sign_in(http)
            room = await create_room(http, alice)
        client = await RoomClient.open(url_a, alice, room)
        acks = [await client.request(type="chat_message", text=f"m{i}", client_msg_id=f"m{i}")
                for i in range(20)]
        assert all(a["type"] == "ack" for a in acks)

        os.kill(proc_a.pid, signal.SIGTERM)
        code = await client.closed_with(timeout=20)
        assert code in (1012, CloseCode.SHUTDOWN), code  # both mean: reconnect and resume
        assert proc_a.wait(timeout=30) is not None, "node A exits by itself"

        again = await RoomClient.open(url_b, alice, room, last_seq=0)
        recovered = await again.wait_for(lambda f: f["type"] == "recovered")
        assert recovered["complete"] is True
        assert [f["seq"] for f in again.durable()] == [a["seq"] for a in acks]
        assert [f["message"]["text"] for f in again.durable()] == [f"m{i}" for i in range(20)]
        await again.close()

"""Two real server processes sharing one Postgres and one Redis of the test's own.

Each test makes its own users and rooms, and leaves nodes A and B and Redis running (the SIGKILL
test kills a node of its own), so the tests pass in any order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from roomserver.protocol import DURABLE_TYPES
from roomserver.store.ports import free_port
from tests.clients import OPERATOR_TOKEN, SignedInUser, health_detail, sign_in
from tests.redis_fixtures import RedisServer
from tests.servers import run_process
from tests.ws_client import RoomClient, create_room


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


NodeStarter = Callable[[str], tuple[str, subprocess.Popen[bytes]]]


@pytest.fixture(scope="module")
def start_node(database_url: str, redis: RedisServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeStarter]:
    """Starts `python -m roomserver serve` nodes on the shared Postgres and Redis, all stopped
    at the end of the module; each call returns a new node's (base URL, process)."""
    origin_port = free_port()
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis.url,
            "PUBLIC_ORIGIN": f"http://127.0.0.1:{origin_port}",
            "PRESENCE_TTL_SECONDS": "3", "PRESENCE_LEAVE_GRACE_MS": "300",
            "WS_CHAT_PER_MINUTE": "1000000", "LOG_LEVEL": "warning",
            # a loaded box can take past the default 40 s of keepalive to flood the stalled
            # reader; its cut must be the hub's slow-consumer close, not a missed pong
            "WS_PING_INTERVAL_SECONDS": "600", "OPERATOR_TOKEN": OPERATOR_TOKEN}
    logs = tmp_path_factory.mktemp("logs")
    ports = iter([origin_port])  # the first node started serves the public origin
    with contextlib.ExitStack() as stack:
        def start(name: str) -> tuple[str, subprocess.Popen[bytes]]:
            env = {**base, "DATA_DIR": str(tmp_path_factory.mktemp(f"node-{name}"))}
            port = next(ports, None) or free_port()
            return stack.enter_context(run_process(env, port=port, log=Path(logs / f"{name}.log")))

        yield start


@pytest.fixture(scope="module")
def nodes(start_node: NodeStarter) -> dict[str, object]:
    urls: dict[str, object] = {}
    for name in ("a", "b"):
        urls[name], urls[f"proc_{name}"] = start_node(name)
    return urls


@pytest.fixture
async def api(nodes: dict[str, object]) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=str(nodes["a"]), timeout=30) as client:
        yield client  # type: ignore[misc]


async def _send_many(client: RoomClient, prefix: str, n: int) -> list[dict[str, object]]:
    """Pipeline n chat frames; returns their acks in order."""
    for i in range(n):
        await client.send(type="chat_message", text=f"{prefix}-{i}", client_msg_id=f"{prefix}-{i}")
    acks = []
    for i in range(n):
        ack = await client.wait_for(lambda f, ref=f"{prefix}-{i}": f.get("client_msg_id") == ref
                                    and f["type"] == "ack", timeout=60)
        acks.append(ack)
    return acks


async def _until_seq(client: RoomClient, seq: int, timeout: float = 60) -> None:
    if not any(f.get("seq") == seq for f in client.durable()):
        await client.wait_for(lambda f: f.get("seq") == seq and f["type"] in DURABLE_TYPES, timeout)


def _assert_gap_free(client: RoomClient, first: int, last: int) -> None:
    seqs = [f["seq"] for f in client.durable() if first <= f["seq"] <= last]
    assert seqs == list(range(first, last + 1)), seqs[:20]


async def test_a_thousand_messages_in_one_order_on_both_nodes(api: httpx.AsyncClient,
                                                                nodes: dict[str, object]) -> None:
    users = [await sign_in(api) for _ in range(4)]
    room = await create_room(api, users[0])
    clients = [await RoomClient.open(str(nodes["ab"[i % 2]]), u, room) for i, u in enumerate(users)]
    start = clients[-1].frames[0]["seq"]
    sent = await asyncio.gather(*(_send_many(c, f"u{i}", 250) for i, c in enumerate(clients)))
    last = max(int(ack["seq"]) for acks in sent for ack in acks)  # type: ignore[call-overload]
    assert last == start + 1000
    orders = []
    for client in clients:
        await _until_seq(client, last)
        _assert_gap_free(client, start + 1, last)
        orders.append([f["message"]["id"] for f in client.durable() if f["type"] == "new_message"])
    assert all(order == orders[0] for order in orders) and len(set(orders[0])) == 1000
    for client in clients:
        await client.close()


async def test_fanout_survives_client_kill_and_redis_restart(api: httpx.AsyncClient, redis: RedisServer,
                                                             nodes: dict[str, object]) -> None:
    alice, bob = await sign_in(api), await sign_in(api)
    room = await create_room(api, alice)
    a = await RoomClient.open(str(nodes["a"]), alice, room)
    b = await RoomClient.open(str(nodes["b"]), bob, room)
    first = b.frames[0]["seq"] + 1

    redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
    acks = await _send_many(a, "after-kill", 20)
    await _until_seq(b, int(acks[-1]["seq"]), timeout=30)  # type: ignore[call-overload]

    redis.stop()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for url in (nodes["a"], nodes["b"]):
                for _ in range(100):
                    health = await health_detail(http, url)
                    if health.status_code == 503:
                        break
                    await asyncio.sleep(0.1)
                assert health.status_code == 503 and health.json()["components"]["redis"]["ok"] is False
            down = await _send_many(a, "while-down", 10)  # durable and acked while Redis is down
            redis.start()
            for url in (nodes["a"], nodes["b"]):
                for _ in range(150):
                    if (await health_detail(http, url)).json()["components"]["redis"]["ok"]:
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"{url} did not recover from the Redis restart")
    finally:
        if redis.process is None:  # a failure above must not leave the next test without Redis
            redis.start()
    after = await _send_many(a, "after-restart", 10)
    last = int(after[-1]["seq"])  # type: ignore[call-overload]
    await _until_seq(b, last, timeout=30)
    _assert_gap_free(b, first, last)
    assert int(down[0]["seq"]) > int(acks[-1]["seq"])  # type: ignore[call-overload]

    c = await RoomClient.open(str(nodes["b"]), bob, room, last_seq=first - 1)
    recovered = await c.wait_for(lambda f: f["type"] == "recovered")
    assert recovered["complete"] is True and recovered["to_seq"] >= last
    _assert_gap_free(c, first, last)
    for client in (a, b, c):
        await client.close()


async def test_a_reader_that_never_reads_is_cut_off_alone(api: httpx.AsyncClient,
                                                           nodes: dict[str, object]) -> None:
    alice, bob, mallory = await sign_in(api), await sign_in(api), await sign_in(api)
    room = await create_room(api, alice)
    a = await RoomClient.open(str(nodes["a"]), alice, room)
    b = await RoomClient.open(str(nodes["a"]), bob, room)
    node = psutil.Process(nodes["proc_a"].pid)  # type: ignore[attr-defined]
    first = a.frames[0]["seq"] + 1
    await _flood(a, b, first, "warm-up")  # the same work once without a stalled reader
    rss_before = node.memory_info().rss
    stalled = _stalled_socket(str(nodes["a"]), room, mallory)
    await a.wait_for(lambda f: f["type"] == "user_joined" and f["user"]["user_id"] == mallory.user_id)
    # The server gives a cut socket's close frame a few seconds to get out behind its full
    # buffer; the stalled reader starts reading as soon as `b` hears it left, however long
    # the flood takes on a loaded box.
    close_code = asyncio.create_task(_close_code_once_gone(b, stalled, mallory))
    await _flood(a, b, first + 1200, "flood")
    growth = node.memory_info().rss - rss_before
    assert growth < 64 * 2**20, f"server grew {growth / 2**20:.1f} MiB"
    assert await close_code == 4001
    for client in (a, b):
        await client.close()


async def _close_code_once_gone(reader: RoomClient, stalled: socket.socket,
                                user: SignedInUser) -> int | None:
    """Waits until `reader` (read by the flood) has received `user`'s `user_left`, then reads
    `stalled` to its close frame."""
    async with asyncio.timeout(120):
        while not any(f["type"] == "user_left" and f["user_id"] == user.user_id
                      for f in reader.frames):
            await asyncio.sleep(0.02)
    return await asyncio.to_thread(_close_code_of, stalled)


async def _flood(a: RoomClient, b: RoomClient, first: int, prefix: str) -> None:
    """1200 messages of 6000 chars (~7 MB: far past socket buffers and the 1 MiB backlog)
    from `a`, while `a` and `b` read; both get every one, in order."""
    last = first + 1199
    readers = [asyncio.create_task(_until_seq(c, last, timeout=120)) for c in (a, b)]
    for i in range(1200):
        await a.send(type="chat_message", text="x" * 6000, client_msg_id=f"{prefix}{i}")
    await asyncio.gather(*readers)
    _assert_gap_free(b, first, last)
    _assert_gap_free(a, first, last)


def _stalled_socket(base_url: str, room: str, user: SignedInUser) -> socket.socket:
    """A WebSocket that completes the handshake and then never reads (tiny receive buffer)."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall((f"GET /ws/rooms/{room} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Protocol: roomserver.v1, bearer.{user.token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: leave every frame unread in the socket
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _close_code_of(sock: socket.socket) -> int | None:
    """Read everything the server sent until it closed; the close frame's code (None: none came)."""
    sock.settimeout(30)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(1 << 20):
            data += chunk
    sock.close()
    at = 0  # `_stalled_socket` read the handshake's response headers and nothing more
    while at + 2 <= len(data):  # walk the (unmasked) server frames
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length == 126:
            length, at = int.from_bytes(data[at:at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at:at + 8], "big"), at + 8
        if opcode == 0x8:
            return int.from_bytes(data[at:at + 2], "big")
        at += length
    return None


async def test_sigkill_a_node_clients_resume_on_the_other(api: httpx.AsyncClient, nodes: dict[str, object],
                                                           start_node: NodeStarter) -> None:
    victim_url, victim = start_node("victim")  # killed here; A and B stay up for other tests
    alice, bob = await sign_in(api), await sign_in(api)
    room = await create_room(api, alice)
    a = await RoomClient.open(str(nodes["a"]), alice, room)
    b = await RoomClient.open(victim_url, bob, room)
    await a.wait_for(lambda f: f["type"] == "user_joined" and f["user"]["user_id"] == bob.user_id)
    start = a.frames[0]["seq"]
    bob_sender = asyncio.create_task(_send_many(b, "bob", 200))
    await asyncio.sleep(0.3)
    os.kill(victim.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await bob_sender
    acked = [f for f in b.frames if f["type"] == "ack"]
    assert acked, "node B died before acknowledging anything"

    left = await a.wait_for(lambda f: f["type"] == "user_left" and f["user_id"] == bob.user_id, 15)
    assert left["reason"] == "timeout"
    seen_by_b = max((f["seq"] for f in b.durable()), default=start)
    again = await RoomClient.open(str(nodes["a"]), bob, room, last_seq=seen_by_b)
    recovered = await again.wait_for(lambda f: f["type"] == "recovered")
    assert recovered["complete"] is True
    have = {f["seq"] for f in b.durable()} | {f["seq"] for f in again.durable()}
    for ack in acked:
        assert ack["seq"] in have
    assert set(range(start + 1, recovered["to_seq"] + 1)) <= have
    await again.close()
    await a.close()

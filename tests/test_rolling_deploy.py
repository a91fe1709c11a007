"""A rolling deploy under traffic: two real nodes behind a round-robin TCP balancer (an asyncio
proxy of the test's own), the load-test replayer (`python -m roomserver.loadtests replay`,
its CLI) playing a synthetic trace through the balancer, and each node in turn taken out of
rotation, sent SIGTERM, waited for, started again on the same port and put back. The
replayer judges every stream by seq: nothing acknowledged may be lost, duplicated or out of
order, and every socket a restart dropped must come back with a complete recovery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from roomserver.store.ports import free_port
from tests.redis_fixtures import RedisServer
from tests.servers import run_process

pytestmark = pytest.mark.slow

ROOMS, MEMBERS, DURATION = 3, 4, 24.0


class Balancer:
    """A loopback TCP load balancer: each new connection goes to the next backend in rotation
    that accepts it (a refused connect tries the next one); `out(port)` takes a backend out of
    rotation for new connections (open ones stay, as on a real balancer's drain)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports, self._out, self._next = ports, set[int](), 0
        self._server: asyncio.Server | None = None
        self.accepted: dict[int, int] = dict.fromkeys(ports, 0)
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._open:
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def out(self, port: int) -> None:
        self._out.add(port)

    def back(self, port: int) -> None:
        self._out.discard(port)

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for i in range(len(self.ports)):
            port = self.ports[(self._next + i) % len(self.ports)]
            if port in self._out:
                continue
            try:
                pair = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self._next = (self._next + i + 1) % len(self.ports)
            self.accepted[port] += 1
            return pair
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._upstream()
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def _loadtest(*args: str) -> list[str]:
    return [sys.executable, "-m", "roomserver.loadtests", *args]


async def _restart(balancer: Balancer, stack: contextlib.ExitStack, proc: subprocess.Popen[bytes],
                   port: int, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Out of rotation, SIGTERM, wait for the exit, start again on the same port, back in once ready.
    Returns the new process and how long the node was out."""
    began = time.monotonic()
    balancer.out(port)
    os.kill(proc.pid, signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    # uvicorn re-raises the signal it drained on, so a clean exit is "killed by SIGTERM"
    assert code in (0, -signal.SIGTERM), f"node on {port} exited with {code} (see {log})"
    url, again = await asyncio.to_thread(stack.enter_context, run_process(env, port=port, log=log))
    async with httpx.AsyncClient(timeout=5) as http, asyncio.timeout(30):
        while (await http.get(f"{url}/ready")).status_code != 200:  # readiness, as a balancer asks
            await asyncio.sleep(0.2)
    balancer.back(port)
    return again, time.monotonic() - began


async def test_rolling_restart_under_traffic_loses_no_acknowledged_message(
        database_url: str, redis: RedisServer, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    balancer = Balancer(ports)
    front = f"http://127.0.0.1:{await balancer.start()}"
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis.url, "PUBLIC_ORIGIN": front,
            "LOG_LEVEL": "warning", "RATE_LIMIT_PER_MINUTE": "100000", "WS_CHAT_PER_MINUTE": "100000",
            "PRESENCE_TTL_SECONDS": "3", "PRESENCE_LEAVE_GRACE_MS": "300"}
    envs = [{**base, "DATA_DIR": str(tmp_path / name)} for name in ("a", "b")]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    trace, out = tmp_path / "trace.jsonl", tmp_path / "report"
    subprocess.run(_loadtest("generate", str(trace), "--rooms", str(ROOMS), "--members", str(MEMBERS),
                             "--duration", str(DURATION), "--message-rate", "0.3", "--churn", "0",
                             "--join-spread", "1", "--seed", "7"), check=True, capture_output=True)
    with contextlib.ExitStack() as stack:
        procs = [(await asyncio.to_thread(stack.enter_context, run_process(env, port=port, log=log)))[1]
                 for env, port, log in zip(envs, ports, logs, strict=True)]
        replayer = await asyncio.create_subprocess_exec(
            *_loadtest("replay", str(trace), "--url", front, "--drain", "15", "--out", str(out)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert replayer.stderr is not None and replayer.stdout is not None
            connected, progress = asyncio.Event(), list[str]()
            watcher = asyncio.create_task(_watch(replayer.stderr, ROOMS * MEMBERS, connected, progress))
            await asyncio.wait_for(connected.wait(), 60)
            outages = []
            for i in (0, 1):
                procs[i], seconds = await _restart(balancer, stack, procs[i], ports[i], envs[i], logs[i])
                outages.append(seconds)
                await asyncio.sleep(2)
            stdout = await asyncio.wait_for(replayer.stdout.read(), 60)
            await asyncio.wait_for(replayer.wait(), 10)
            await watcher
        finally:
            if replayer.returncode is None:
                replayer.kill()
            await balancer.close()
    result: dict[str, Any] = orjson.loads((out / "result.json").read_bytes())
    durable, sockets = result["durable"], result["sockets"]
    summary = stdout.decode() + "".join(progress[-5:])
    assert durable["lost"] == 0 and durable["out_of_order"] == 0 and durable["duplicated"] == 0, summary
    assert result["ok"] and replayer.returncode == 0, summary
    assert result["acked"] > 40 and result["unacked"] == 0, summary  # every frame sent was acked
    assert all(room["seq"] > 0 for room in durable["rooms"].values()), summary
    dropped = sum(sockets["dropped_by_server"].values())
    assert dropped >= ROOMS * MEMBERS, summary  # every socket sat on some node that restarted
    assert set(sockets["dropped_by_server"]) <= {"1012", "4000", "1006"}, summary  # "reconnect"
    # every dropped socket came back: as many opens as first joins plus reconnects, each resumed whole
    assert sockets["opened"] == ROOMS * MEMBERS + sockets["reconnects"], summary
    assert result["recovery"]["complete"] == sockets["reconnects"], summary
    assert result["recovery"]["incomplete"] == 0, summary
    assert all(seconds < 30 for seconds in outages), outages


async def _watch(stderr: asyncio.StreamReader, expected: int, connected: asyncio.Event,
                 lines: list[str]) -> None:
    """Keep the replayer's progress lines; set `connected` once it reports `expected` open sockets."""
    while line := (await stderr.readline()).decode():
        lines.append(line)
        found = re.search(r"play\] sockets (\d+)", line)
        if found and int(found.group(1)) >= expected:
            connected.set()

"""The server starts with no environment at all, on its embedded defaults, and /health is green."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.store.ports import free_port
from tests.clients import OPERATOR, OPERATOR_TOKEN
from tests.servers import wait_healthy


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """As root the embedded cluster of a DATA_DIR here lives outside it (pytest's folders are
    private: store/pgembed.py); it is removed with the test's folder."""
    yield tmp_path
    home = (tmp_path / "data" / "postgres" / "pgdata").resolve().parent
    if tmp_path not in home.parents:
        shutil.rmtree(home, ignore_errors=True)


def test_serve_with_no_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OPERATOR_TOKEN": OPERATOR_TOKEN}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roomserver", "serve", "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
            assert health.status_code == 200, health.text
            assert health.json() == {"status": "ok"}  # nothing else for anonymous callers
            detail = httpx.get(f"http://127.0.0.1:{port}/health/detail", headers=OPERATOR, timeout=10)
            assert detail.status_code == 200, detail.text
            body = detail.json()
            assert body["status"] == "ok"
            assert all(c["ok"] for c in body["components"].values()), body
            assert "embedded" in body["components"]["database"]["mode"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    output = log.read_text()
    assert "embedded PostgreSQL" in output, output
    password = (tmp_path / "data" / "postgres" / "password").read_text().strip()
    assert password not in output and password not in detail.text  # neither printed nor shown
    assert (tmp_path / "data" / "postgres" / "pgdata" / "PG_VERSION").exists()
    # the embedded server was stopped with the app
    assert not (tmp_path / "data" / "postgres" / "pgdata" / "postmaster.pid").exists(), output


def test_workers_need_redis(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "roomserver", "serve", "--workers", "2",
                           "--port", str(free_port())], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "REDIS_URL" in done.stderr


async def test_two_workers_share_one_database_ledger_and_redis(tmp_path: Path) -> None:
    """`serve --workers 2`: the embedded database and ledger start once, for both workers."""
    from tests.clients import sign_in
    from tests.redis_fixtures import RedisServer
    from tests.ws_client import RoomClient, create_room

    redis = RedisServer()
    redis.start()
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "REDIS_URL": redis.url,
           "EMBEDDINGS_PRELOAD": "false", "PUBLIC_ORIGIN": f"http://127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "roomserver", "serve", "--workers", "2",
                             "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, timeout=120)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            assert (await http.get("/health")).status_code == 200
            alice, bob = await sign_in(http), await sign_in(http)
            room = await create_room(http, alice)
            clients = [await RoomClient.open(base, user, room) for user in (alice, bob) * 3]
            ack = await clients[0].request(type="chat_message", text="hi all", client_msg_id="c1")
            for client in clients:  # (the sender may get its message before its ack)
                seen = [f for f in client.frames if f["type"] == "new_message"]
                got = seen[0] if seen else await client.wait_for(lambda f: f["type"] == "new_message")
                assert got["seq"] == ack["seq"] and got["message"]["text"] == "hi all"
                await client.close()
        assert len(list((tmp_path / "data").glob("postgres/pgdata/PG_VERSION"))) == 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        redis.stop()

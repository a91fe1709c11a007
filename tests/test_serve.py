"""The server starts with no environment at all, on its embedded defaults, and /health is green."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from roomserver.pgembed import free_port
from tests.servers import wait_healthy


def test_serve_with_no_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roomserver", "serve", "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
            assert health.status_code == 200, health.text
            body = health.json()
            assert body["status"] == "ok"
            assert all(c["ok"] for c in body["components"].values()), body
            assert "embedded" in body["components"]["database"]["mode"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    output = log.read_text()
    assert "embedded PostgreSQL" in output, output
    assert (tmp_path / "data" / "postgres" / "pgdata" / "PG_VERSION").exists()
    # the embedded server was stopped with the app
    assert not (tmp_path / "data" / "postgres" / "pgdata" / "postmaster.pid").exists(), output


def test_help_lists_subcommands_and_settings() -> None:
    out = subprocess.run([sys.executable, "-m", "roomserver", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("serve", "migrate", "DATABASE_URL", "REDIS_URL", "SOLANA_RPC_URL",
                 "ANTHROPIC_API_KEY", "PUBLIC_ORIGIN", "ALLOWED_ORIGINS"):
        assert word in out

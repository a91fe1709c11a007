"""Real servers for tests: the app under uvicorn on a free loopback port, in-process or as a child."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import uvicorn
from uvicorn._types import ASGIApplication

from roomserver.app import create_app
from roomserver.config import Settings
from roomserver.library.embeddings import Embedder
from roomserver.protocol import MAX_FRAME_BYTES
from roomserver.store.ports import free_port
from tests.model_fixtures import shared_lazy_minilm


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApplication, port: int, *, lifespan: str = "on",
                     shutdown_timeout: float = 15) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1:`port` in this loop; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            ws_per_message_deflate=False, ws_max_size=MAX_FRAME_BYTES,
                            lifespan=lifespan, timeout_graceful_shutdown=5,
                            proxy_headers=False)  # as `serve`: only FORWARDED_ALLOW_IPS, in the app
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=shutdown_timeout)


@contextlib.asynccontextmanager
async def run_app(settings: Settings, *, embedder: Embedder | None = None) -> AsyncIterator[str]:
    """Serve `create_app(settings)` on 127.0.0.1:settings.port; yields the base URL.

    `embedder` defaults to the test session's one lazily loaded MiniLM model. Every response is
    checked against its endpoint's declaration (`VALIDATE_RESPONSES`, roomserver/api/contract.py)."""
    checked = dataclasses.replace(settings, validate_responses=True)
    app = create_app(checked, embedder=embedder or shared_lazy_minilm())
    async with serve_asgi(app, settings.port, shutdown_timeout=30) as url:
        yield url


SERVE = ("-m", "roomserver", "serve")
"""How every test node is started (`python` and these); the Dockerfile and deploy/compose.yaml
run the same (tests/unit/test_compose.py)."""


@contextlib.contextmanager
def run_process(env: dict[str, str], *, port: int | None = None, log: Path | None = None,
                args: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m roomserver serve` as a child process; yields (base URL, process)."""
    port = port or free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, *SERVE, "--port", str(port), *args],
        env={**os.environ, "EMBEDDINGS_PRELOAD": "false", "VALIDATE_RESPONSES": "true", **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code in (200, 503):
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become healthy in {timeout}s")

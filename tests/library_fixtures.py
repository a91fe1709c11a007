"""Shared helpers of the library tests: the app on a free port with the session's one model,
uploads over multipart, waiting for ingestion jobs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from roomserver.config import Settings
from roomserver.library.embeddings import Embedder, MiniLMEmbedder
from roomserver.store.ports import free_port
from tests.clients import SignedInUser
from tests.servers import run_app


def serve(settings: Settings, embedder: Embedder) -> contextlib.AbstractAsyncContextManager[str]:
    """`create_app(settings, embedder=...)` under uvicorn on settings.port; yields the base URL."""
    return run_app(settings, embedder=embedder)


async def upload(http: httpx.AsyncClient, user: SignedInUser, content: bytes, filename: str,
                 **fields: Any) -> httpx.Response:
    data = {k: v for k, v in fields.items() if v is not None}
    return await http.post("/api/v1/documents/upload", headers=user.headers,
                           files={"file": (filename, content, "application/octet-stream")}, data=data)


async def wait_job(http: httpx.AsyncClient, user: SignedInUser, job_id: str, *,
                   until: tuple[str, ...] = ("ready", "failed"), timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(f"/api/v1/ingest/jobs/{job_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
        await asyncio.sleep(0.1)


async def ingest(http: httpx.AsyncClient, user: SignedInUser, content: bytes, filename: str,
                 **fields: Any) -> dict[str, Any]:
    """Upload and wait until ready; returns the document."""
    response = await upload(http, user, content, filename, **fields)
    assert response.status_code == 202, response.text
    job = await wait_job(http, user, response.json()["job"]["id"])
    assert job["status"] == "ready", job
    document: dict[str, Any] = response.json()["document"]
    return document


async def search(http: httpx.AsyncClient, user: SignedInUser, q: str, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/api/v1/documents/library", headers=user.headers, params={"q": q, **params})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


# fixtures (a plugin of tests/conftest.py) for modules that serve the library with the session's
# model (`embedder`, from tests.model_fixtures)

@pytest.fixture(scope="module")
async def url(settings: Settings, embedder: MiniLMEmbedder) -> AsyncIterator[str]:
    async with serve(dataclasses.replace(settings, port=free_port()), embedder) as base:
        yield base


@pytest.fixture
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        yield http

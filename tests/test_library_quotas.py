"""Per-user upload quotas over real HTTP (issue 12 item 10): live documents (429
`upload_quota_exceeded`), their bytes (413 `storage_quota_exceeded`) and unfinished jobs
(429 `too_many_pending_jobs`), each with the limit in `details`; freeing space lifts them."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from roomserver.config import Settings
from roomserver.library.embeddings import MiniLMEmbedder
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.library_fixtures import ingest, serve, upload
from tests.model_fixtures import shared_minilm


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    return shared_minilm()


@pytest.fixture(scope="module")
async def url(settings: Settings, embedder: MiniLMEmbedder) -> AsyncIterator[str]:
    quotas = dataclasses.replace(settings, library_max_documents=3, library_max_bytes=3000,
                                 library_max_pending_jobs=2, port=free_port())
    async with serve(quotas, embedder) as base:
        yield base


@pytest.fixture
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        yield http


def text(size: int = 60) -> bytes:
    line = f"Notes {uuid.uuid4()} on photosynthesis and the light reactions. "
    return (line * (size // len(line) + 1)).encode()[:size]


def error(response: httpx.Response) -> dict[str, object]:
    body: dict[str, object] = response.json()["error"]
    return body


async def test_documents_per_user(client: httpx.AsyncClient) -> None:
    alice, bob = await sign_in(client), await sign_in(client)
    docs = [await ingest(client, alice, text(), f"n{n}.txt") for n in range(3)]
    refused = await upload(client, alice, text(), "one-too-many.txt")
    assert refused.status_code == 429
    assert error(refused)["code"] == "upload_quota_exceeded"
    assert error(refused)["details"] == {"limit": 3, "used": 3}
    assert (await upload(client, bob, text(), "bobs.txt")).status_code == 202  # per user
    assert (await client.delete(f"/api/v1/documents/{docs[0]['id']}", headers=alice.headers)).status_code == 200
    await ingest(client, alice, text(), "after-delete.txt")


async def test_bytes_per_user(client: httpx.AsyncClient) -> None:
    carol = await sign_in(client)
    big = await ingest(client, carol, text(2500), "big.txt")
    refused = await upload(client, carol, text(600), "too-much.txt")
    assert refused.status_code == 413
    assert error(refused)["code"] == "storage_quota_exceeded"
    assert error(refused)["details"] == {"limit": 3000, "used": 2500, "size": 600}
    await ingest(client, carol, text(500), "fits.txt")
    assert (await client.delete(f"/api/v1/documents/{big['id']}", headers=carol.headers)).status_code == 200
    await ingest(client, carol, text(600), "now-fits.txt")


async def test_unfinished_jobs_per_user(client: httpx.AsyncClient, settings: Settings) -> None:
    dave = await sign_in(client)
    db = await asyncpg.connect(settings.database_url)
    try:
        # two jobs another node is reading right now (a live lease): unfinished
        jobs = []
        for _ in range(2):
            doc = await db.fetchval(
                """INSERT INTO documents (owner_id, title, filename, content_type, size_bytes, content_hash, blob_cid)
                   VALUES ($1, 't', 't.txt', 'text/plain', 10, $2, 'b') RETURNING id""",
                uuid.UUID(dave.user_id), f"hash-{uuid.uuid4()}")
            jobs.append(await db.fetchval(
                """INSERT INTO ingestion_jobs (document_id, status, attempts, lease_until)
                   VALUES ($1, 'extracting', 1, now() + interval '1 hour') RETURNING id""", doc))
        refused = await upload(client, dave, text(), "queued.txt")
        assert refused.status_code == 429
        assert error(refused)["code"] == "too_many_pending_jobs"
        details = error(refused)["details"]
        assert isinstance(details, dict) and details["limit"] == 2 and details["pending"] == 2
        assert details["retry_after"] > 0
        await db.execute("UPDATE ingestion_jobs SET status = 'failed', lease_until = NULL WHERE id = $1", jobs[0])
        assert (await upload(client, dave, text(), "queued.txt")).status_code == 202
    finally:
        await db.close()

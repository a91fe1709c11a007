"""Uploads live in the private blob store (issue 12 item 1): `/ipfs/{cid}` never serves them,
to anyone; the access-checked download does, for exactly the readers, and stops when access
ends; content addresses are shown to the owner only; a blob no live document references is
deleted (at the document's deletion, and by the sweep). Real PostgreSQL, model and uvicorn."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from roomserver.config import Settings
from roomserver.library.embeddings import MiniLMEmbedder
from roomserver.store.blobstore import LocalBlobStore
from roomserver.store.cid import cid_for_bytes
from roomserver.store.ports import free_port
from tests.clients import SignedInUser, sign_in
from tests.library_fixtures import ingest, serve
from tests.model_fixtures import shared_minilm


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    return shared_minilm()


@pytest.fixture(scope="module")
def blob_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, blob_sweep_seconds=1, port=free_port())


@pytest.fixture(scope="module")
async def url(blob_settings: Settings, embedder: MiniLMEmbedder) -> AsyncIterator[str]:
    async with serve(blob_settings, embedder) as base:
        yield base


@pytest.fixture
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        yield http


def private_root(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "blobs" / "private"


def notes() -> bytes:
    return f"Private notes {uuid.uuid4()}: the Krebs cycle turns acetyl-CoA into CO2.\n".encode()


async def ipfs_status(client: httpx.AsyncClient, cid: str, user: SignedInUser | None = None) -> int:
    response = await client.get(f"/ipfs/{cid}", headers=user.headers if user else {})
    if response.status_code == 404:
        assert response.json()["error"]["code"] == "blob_not_found"
    return response.status_code


async def download(client: httpx.AsyncClient, doc: dict[str, object], user: SignedInUser) -> httpx.Response:
    return await client.get(f"/api/v1/documents/{doc['id']}/download", headers=user.headers)


async def test_a_private_upload_is_never_served_by_cid_and_its_download_follows_access(
        client: httpx.AsyncClient, blob_settings: Settings) -> None:
    alice, bob, carol, dave = (await sign_in(client), await sign_in(client), await sign_in(client),
                               await sign_in(client))
    content = notes()
    cid = cid_for_bytes(content)  # what anyone holding the file can compute
    doc = await ingest(client, alice, content, "krebs.txt")
    assert doc["blob_cid"] == cid  # the owner sees it
    assert (private_root(blob_settings) / cid[-3:-1] / cid).is_file()
    room = (await client.post("/api/v1/rooms", headers=alice.headers,
                              json={"name": "Metabolism", "room_type": "public"})).json()
    for member in (bob, dave):
        assert (await client.post(f"/api/v1/rooms/{room['id']}/join", headers=member.headers)).status_code == 200
    shared = await client.post(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                               json={"room_id": room["id"]})
    assert shared.status_code == 201
    await client.post(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers, json={"user_id": carol.user_id})

    # the owner, a member of the room it is shared to, and the user it is shared to may download
    for reader in (alice, bob, carol, dave):
        got = await download(client, doc, reader)
        assert got.status_code == 200 and got.content == content
        assert got.headers["cache-control"] == "private, no-store"
    # ... but only the owner learns its content address
    for reader in (bob, carol):
        seen = (await client.get(f"/api/v1/documents/{doc['id']}", headers=reader.headers)).json()
        assert seen["blob_cid"] is None and seen["content_hash"] is None and seen["title"] == "krebs"
    listed = (await client.get("/api/v1/documents/library", headers=bob.headers,
                               params={"room_id": room["id"]})).json()["results"]
    assert [(d["id"], d["blob_cid"], d["content_hash"]) for d in listed] == [(doc["id"], None, None)]

    # by CID: nobody, not even the owner or a reader, not anonymously
    for who in (None, alice, bob, carol, dave):
        assert await ipfs_status(client, cid, who) == 404

    # revoke the user share; a member leaves the room: both downloads stop, the staying member keeps it
    revoked = await client.delete(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                                  params={"user_id": carol.user_id})
    assert revoked.status_code == 200
    assert (await client.post(f"/api/v1/rooms/{room['id']}/leave", headers=bob.headers)).status_code == 200
    for former in (bob, carol):
        assert (await download(client, doc, former)).status_code == 404
        assert await ipfs_status(client, cid, former) == 404
    assert (await download(client, doc, dave)).status_code == 200
    # revoke the room share: the member still in the room loses it too
    revoked = await client.delete(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                                  params={"room_id": room["id"]})
    assert revoked.status_code == 200
    assert (await download(client, doc, dave)).status_code == 404
    assert await ipfs_status(client, cid, dave) == 404
    assert (await download(client, doc, alice)).status_code == 200


async def test_deleting_the_last_document_deletes_its_blob(client: httpx.AsyncClient,
                                                           blob_settings: Settings) -> None:
    alice, bob = await sign_in(client), await sign_in(client)
    content = notes()
    cid = cid_for_bytes(content)
    mine = await ingest(client, alice, content, "shared-bytes.txt")
    theirs = await ingest(client, bob, content, "same-bytes.txt")  # same bytes, another owner
    blob = private_root(blob_settings) / cid[-3:-1] / cid
    assert (await client.delete(f"/api/v1/documents/{mine['id']}", headers=alice.headers)).status_code == 200
    assert blob.is_file(), "bob's document still references the blob"
    assert (await download(client, theirs, bob)).content == content
    assert (await client.delete(f"/api/v1/documents/{theirs['id']}", headers=bob.headers)).status_code == 200
    assert not blob.exists()
    assert await ipfs_status(client, cid) == 404


async def test_the_sweep_deletes_orphans_and_keeps_referenced_uploads(client: httpx.AsyncClient,
                                                                      blob_settings: Settings) -> None:
    alice = await sign_in(client)
    kept = await ingest(client, alice, notes(), "kept.txt")
    store = LocalBlobStore(private_root(blob_settings))  # an upload interrupted before its row
    orphan = await store.put(notes(), "text/plain")
    deadline = time.monotonic() + 20
    while await store.exists(orphan):
        assert time.monotonic() < deadline, "the sweep (every second here) never deleted the orphan"
        await asyncio.sleep(0.2)
    assert await store.exists(kept["blob_cid"])


async def test_published_nft_content_is_still_served(client: httpx.AsyncClient, blob_settings: Settings) -> None:
    public = LocalBlobStore(blob_settings.data_dir.resolve() / "blobs" / "public")
    cid = await public.put(b'{"name": "card"}', "application/json")
    response = await client.get(f"/ipfs/{cid}")
    assert response.status_code == 200 and response.content == b'{"name": "card"}'
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_a_ban_and_an_expired_share_stop_the_download(client: httpx.AsyncClient) -> None:
    owner, member, guest = await sign_in(client), await sign_in(client), await sign_in(client)
    content = notes()
    doc = await ingest(client, owner, content, "ban.txt")
    room = (await client.post("/api/v1/rooms", headers=owner.headers,
                              json={"name": "Glycolysis", "room_type": "public"})).json()
    await client.post(f"/api/v1/rooms/{room['id']}/join", headers=member.headers)
    await client.post(f"/api/v1/documents/{doc['id']}/share", headers=owner.headers, json={"room_id": room["id"]})
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    await client.post(f"/api/v1/documents/{doc['id']}/share", headers=owner.headers,
                      json={"user_id": guest.user_id, "expires_at": soon})
    for reader in (member, guest):
        assert (await download(client, doc, reader)).content == content
    banned = await client.post(f"/api/v1/rooms/{room['id']}/bans", headers=owner.headers,
                               json={"user_id": member.user_id})
    assert banned.status_code == 201, banned.text
    assert (await download(client, doc, member)).status_code == 404
    await asyncio.sleep(2.5)
    assert (await download(client, doc, guest)).status_code == 404
    for who in (None, member, guest):
        assert await ipfs_status(client, cid_for_bytes(content), who) == 404

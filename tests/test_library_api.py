"""The library over real HTTP: uploads (dedup, types, caps, names), jobs, details, download,
changes, listing, deletion, sharing rules. Real PostgreSQL, the real model, uvicorn."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from urllib.parse import unquote

import asyncpg
import httpx
import pytest

from roomserver.config import Settings
from roomserver.library.embeddings import MiniLMEmbedder
from roomserver.store.ports import free_port
from tests.clients import SignedInUser, sign_in
from tests.library_fixtures import ingest, serve, upload, wait_job

NOTES = (b"Mitochondria are the powerhouse of the cell. They make ATP by oxidative phosphorylation.\n\n"
         b"The inner membrane folds into cristae, which enlarge its surface.\n")
CAP = 256 * 1024


@pytest.fixture(scope="module")
async def url(settings: Settings, embedder: MiniLMEmbedder) -> AsyncIterator[str]:
    capped = dataclasses.replace(settings, max_upload_bytes=CAP, port=free_port())
    async with serve(capped, embedder) as base:
        yield base


@pytest.fixture
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        yield http


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> SignedInUser:
    return await sign_in(client)


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> SignedInUser:
    return await sign_in(client)


async def test_upload_answers_202_with_document_and_job_then_ingests(client: httpx.AsyncClient,
                                                                     alice: SignedInUser) -> None:
    response = await upload(client, alice, NOTES, "cell notes.txt", tags="Biology, cells", title="Cells")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["duplicate"] is False
    doc, job = body["document"], body["job"]
    assert doc["title"] == "Cells" and doc["tags"] == ["biology", "cells"]
    assert doc["content_type"].startswith("text/plain") and doc["size_bytes"] == len(NOTES)
    assert job["status"] in ("pending", "extracting", "embedding", "ready")
    finished = await wait_job(client, alice, job["id"])
    assert finished["status"] == "ready" and finished["progress"] == 1 and finished["chunk_count"] >= 1
    details = await client.get(f"/api/v1/documents/{doc['id']}", headers=alice.headers)
    assert details.json()["status"] == "ready" and details.json()["page_count"] == 1


async def test_same_file_twice_returns_the_existing_document(client: httpx.AsyncClient,
                                                            alice: SignedInUser, bob: SignedInUser) -> None:
    content = b"# Duplicates\n\nThe same bytes uploaded twice are stored once.\n"
    first = await upload(client, alice, content, "a.md")
    again = await upload(client, alice, content, "renamed.md")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["document"]["id"] == first.json()["document"]["id"]
    assert again.json()["job"]["id"] == first.json()["job"]["id"]
    other = await upload(client, bob, content, "a.md")  # dedup is per owner
    assert other.status_code == 202 and other.json()["document"]["id"] != first.json()["document"]["id"]


async def test_type_comes_from_the_bytes(client: httpx.AsyncClient, alice: SignedInUser) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    refused = await upload(client, alice, png, "notes.txt")
    assert refused.status_code == 415
    assert refused.json()["error"]["code"] == "unsupported_type"
    assert refused.json()["error"]["details"]["detected"] == "image/png"
    fake_pdf = await upload(client, alice, b"just words, not a PDF at all\n", "paper.pdf")
    assert fake_pdf.status_code == 415
    csv = await upload(client, alice, b"element,symbol\nhydrogen,H\nhelium,He\n", "elements.csv")
    assert csv.status_code == 202 and csv.json()["document"]["content_type"].startswith("text/csv")


async def test_oversize_upload_is_413_and_the_server_keeps_serving(client: httpx.AsyncClient,
                                                                   alice: SignedInUser) -> None:
    big = b"word " * (CAP // 5 + 1000)
    response = await upload(client, alice, big, "big.txt")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        yield b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.txt\"\r\n\r\n"
        for _ in range(CAP // 8192 + 4):
            yield b"a" * 8192
        yield b"\r\n--xx--\r\n"

    streamed = await client.post("/api/v1/documents/upload", content=chunked(),
                                 headers={**alice.headers, "Content-Type": "multipart/form-data; boundary=xx"})
    assert streamed.status_code == 413
    assert (await upload(client, alice, b"still fine after that\n", "ok.txt")).status_code == 202


async def test_bad_requests_are_typed(client: httpx.AsyncClient, alice: SignedInUser) -> None:
    no_file = await client.post("/api/v1/documents/upload", headers=alice.headers, data={"title": "x"})
    assert no_file.status_code == 400 and no_file.json()["error"]["code"] == "missing_file"
    empty = await upload(client, alice, b"", "empty.txt")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_file"
    bad_flag = await upload(client, alice, b"some text here\n", "t.txt", is_public="maybe")
    assert bad_flag.status_code == 400 and bad_flag.json()["error"]["code"] == "validation_error"
    bad_tag = await upload(client, alice, b"other text here\n", "t.txt", tags="<script>")
    assert bad_tag.status_code == 400
    anonymous = await client.post("/api/v1/documents/upload", files={"file": ("a.txt", b"x")})
    assert anonymous.status_code == 401
    for path in ("/api/v1/documents/not-a-uuid", "/api/v1/ingest/jobs/not-a-uuid"):
        missing = await client.get(path, headers=alice.headers)
        assert missing.status_code == 404
    cursor = await client.get("/api/v1/documents/library", headers=alice.headers, params={"cursor": "zzz"})
    assert cursor.status_code == 400 and cursor.json()["error"]["code"] == "invalid_cursor"


async def test_filename_is_sanitised_and_download_is_safe(client: httpx.AsyncClient, alice: SignedInUser) -> None:
    content = "Notes on ångström-scale structures.\n".encode()
    response = await upload(client, alice, content, '../../etc/"evil"\r\nname ängström.txt')
    assert response.status_code == 202, response.text
    doc = response.json()["document"]
    assert "/" not in doc["filename"] and "\r" not in doc["filename"] and '"' not in doc["filename"]
    first = await client.get(f"/api/v1/documents/{doc['id']}/download", headers=alice.headers)
    assert first.status_code == 200 and first.content == content
    assert first.headers["content-type"].startswith("text/plain")
    assert first.headers["x-content-type-options"] == "nosniff"
    disposition = first.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "\r" not in disposition and "\n" not in disposition
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == doc["filename"]
    await client.get(f"/api/v1/documents/{doc['id']}/download", headers=alice.headers)
    details = await client.get(f"/api/v1/documents/{doc['id']}", headers=alice.headers)
    assert details.json()["download_count"] == 2


async def test_private_documents_and_jobs_are_invisible_to_others(client: httpx.AsyncClient,
                                                                 alice: SignedInUser, bob: SignedInUser) -> None:
    response = await upload(client, alice, b"Alice's private diary about orbital mechanics.\n", "diary.txt")
    doc, job = response.json()["document"], response.json()["job"]
    for path in (f"/api/v1/documents/{doc['id']}", f"/api/v1/documents/{doc['id']}/download",
                 f"/api/v1/ingest/jobs/{job['id']}"):
        assert (await client.get(path, headers=bob.headers)).status_code == 404
    patch = await client.patch(f"/api/v1/documents/{doc['id']}", headers=bob.headers, json={"title": "mine"})
    assert patch.status_code == 404
    assert (await client.delete(f"/api/v1/documents/{doc['id']}", headers=bob.headers)).status_code == 404
    shared = await client.post(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                               json={"user_id": bob.user_id})
    assert shared.status_code == 201 and shared.json()["permission"] == "read"
    assert (await client.get(f"/api/v1/documents/{doc['id']}", headers=bob.headers)).status_code == 200
    patch = await client.patch(f"/api/v1/documents/{doc['id']}", headers=bob.headers, json={"title": "mine"})
    assert patch.status_code == 403 and patch.json()["error"]["code"] == "not_owner"
    reshare = await client.post(f"/api/v1/documents/{doc['id']}/share", headers=bob.headers,
                                json={"user_id": alice.user_id})
    assert reshare.status_code == 403
    revoked = await client.delete(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                                  params={"user_id": bob.user_id})
    assert revoked.status_code == 200
    assert (await client.get(f"/api/v1/documents/{doc['id']}", headers=bob.headers)).status_code == 404
    again = await client.delete(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                                params={"user_id": bob.user_id})
    assert again.status_code == 404 and again.json()["error"]["code"] == "share_not_found"


async def test_sharing_validates_its_target(client: httpx.AsyncClient, alice: SignedInUser,
                                           bob: SignedInUser) -> None:
    doc = (await upload(client, alice, b"Sharing rules are checked.\n", "rules.txt")).json()["document"]
    share = f"/api/v1/documents/{doc['id']}/share"
    both = await client.post(share, headers=alice.headers, json={"user_id": bob.user_id,
                                                                  "room_id": bob.user_id})
    assert both.status_code == 400
    past = await client.post(share, headers=alice.headers,
                             json={"user_id": bob.user_id, "expires_at": "2001-01-01T00:00:00Z"})
    assert past.status_code == 400 and past.json()["error"]["code"] == "expires_in_past"
    nobody = await client.post(share, headers=alice.headers,
                               json={"user_id": "00000000-0000-4000-8000-000000000000"})
    assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "user_not_found"
    room = await client.post("/api/v1/rooms", headers=bob.headers, json={"name": "Bob's room", "room_type": "public"})
    not_member = await client.post(share, headers=alice.headers, json={"room_id": room.json()["id"]})
    assert not_member.status_code == 403 and not_member.json()["error"]["code"] == "not_member"
    admin = await client.post(share, headers=alice.headers, json={"user_id": bob.user_id, "permission": "admin"})
    assert admin.status_code == 201
    by_admin = await client.post(share, headers=bob.headers, json={"room_id": room.json()["id"]})
    assert by_admin.status_code == 201, by_admin.text
    listed = await client.get(share, headers=alice.headers)
    assert {s["room_id"] for s in listed.json()["shares"]} == {None, room.json()["id"]}


async def test_owner_edits_lists_by_tag_and_deletes(client: httpx.AsyncClient, alice: SignedInUser,
                                                    settings: Settings) -> None:
    docs = []
    for n in range(3):
        body = f"Lecture {n} covers the history of the printing press, part {n}.\n".encode()
        docs.append(await ingest(client, alice, body, f"lecture{n}.txt", tags="history"))
    changed = await client.patch(f"/api/v1/documents/{docs[0]['id']}", headers=alice.headers,
                                 json={"title": "Printing, part zero", "tags": ["History", "Print"], "is_public": True})
    assert changed.status_code == 200
    assert changed.json()["tags"] == ["history", "print"] and changed.json()["is_public"] is True
    empty = await client.patch(f"/api/v1/documents/{docs[0]['id']}", headers=alice.headers, json={})
    assert empty.status_code == 400
    page1 = await client.get("/api/v1/documents/library", headers=alice.headers,
                             params={"tags": "history", "owner": "me", "limit": 2})
    assert page1.status_code == 200
    assert [d["id"] for d in page1.json()["results"]] == [docs[2]["id"], docs[1]["id"]]
    page2 = await client.get("/api/v1/documents/library", headers=alice.headers,
                             params={"tags": "history", "owner": "me", "limit": 2,
                                     "cursor": page1.json()["next_cursor"]})
    assert [d["id"] for d in page2.json()["results"]] == [docs[0]["id"]]
    assert page2.json()["next_cursor"] is None
    print_only = await client.get("/api/v1/documents/library?tags=history&tags=print", headers=alice.headers)
    assert [d["id"] for d in print_only.json()["results"]] == [docs[0]["id"]]

    deleted = await client.delete(f"/api/v1/documents/{docs[1]['id']}", headers=alice.headers)
    assert deleted.status_code == 200
    assert (await client.get(f"/api/v1/documents/{docs[1]['id']}", headers=alice.headers)).status_code == 404
    hits = await client.get("/api/v1/documents/library", headers=alice.headers,
                            params={"q": "printing press lecture 1", "owner": "me"})
    assert docs[1]["id"] not in {h["document_id"] for h in hits.json()["results"]}
    conn = await asyncpg.connect(settings.database_url)
    try:
        chunks = await conn.fetchval("SELECT count(*) FROM document_chunks WHERE document_id = $1",
                                     docs[1]["id"])
        audit = await conn.fetch("SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id",
                                 docs[1]["id"])
    finally:
        await conn.close()
    assert chunks == 0
    assert [row["action"] for row in audit] == ["document.upload", "document.delete"]
    reupload = await upload(client, alice, b"Lecture 1 covers the history of the printing press, part 1.\n",
                            "lecture1.txt")
    assert reupload.status_code == 202 and reupload.json()["document"]["id"] != docs[1]["id"]

"""What happens over REST shows up live in rooms: shares, highlights, ingestion progress;
and sharing over the socket lets the room read the document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.clients import sign_in
from tests.library_fixtures import upload, wait_job
from tests.ws_client import RoomClient, create_room

NOTES = (b"Entropy of an isolated system never decreases. The second law of thermodynamics says so.\n\n"
         b"A reversible process keeps total entropy constant; dS = dQ/T along it.\n")


async def _ready_document(http: httpx.AsyncClient, owner, content: bytes = NOTES) -> str:  # type: ignore[no-untyped-def]
    answer = await upload(http, owner, content, "thermo.txt", title="Thermo notes")
    assert answer.status_code == 202, answer.text
    job = await wait_job(http, owner, answer.json()["job"]["id"])
    assert job["status"] == "ready", job
    return str(answer.json()["document"]["id"])


async def test_rest_share_and_highlight_reach_the_room(http: httpx.AsyncClient, base_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    assert (await http.post(f"/api/v1/rooms/{room}/join", headers=bob.headers)).status_code == 200
    doc = await _ready_document(http, alice)
    watcher = await RoomClient.open(base_url, bob, room)

    shared = await http.post(f"/api/v1/documents/{doc}/share", headers=alice.headers,
                             json={"room_id": room})
    assert shared.status_code in (200, 201), shared.text
    event = await watcher.wait_for(lambda f: f["type"] == "document_shared")
    assert event["document_id"] == doc and event["title"] == "Thermo notes" and event["seq"] >= 1

    made = await http.post(f"/api/v1/documents/{doc}/highlights", headers=bob.headers,
                           json={"text": "dS = dQ/T", "page": 1, "room_id": room})
    assert made.status_code in (200, 201), made.text
    created = await watcher.wait_for(lambda f: f["type"] == "highlight_created")
    assert created["highlight"]["id"] == made.json()["id"]
    assert created["highlight"]["text"] == "dS = dQ/T" and created["seq"] == event["seq"] + 1

    # both are in the room's history for late joiners
    page = (await http.get(f"/api/v1/rooms/{room}/messages", headers=bob.headers)).json()
    assert any(m.get("metadata", {}).get("document_id") == doc for m in page["messages"])
    await watcher.close()


async def test_socket_share_grants_the_room_read_access(http: httpx.AsyncClient, base_url: str) -> None:
    alice, bob, carol = await sign_in(http), await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    await http.post(f"/api/v1/rooms/{room}/join", headers=bob.headers)
    doc = await _ready_document(http, alice, NOTES + b"\nA unique line about carnot engines.\n")
    assert (await http.get(f"/api/v1/documents/{doc}", headers=bob.headers)).status_code == 404

    a = await RoomClient.open(base_url, alice, room)
    b = await RoomClient.open(base_url, bob, room)
    refused = await b.request(type="document_share", document_id=doc, client_msg_id="steal")
    assert refused["type"] == "error" and refused["code"] == "document_not_found"

    ack = await a.request(type="document_share", document_id=doc, note="read this", client_msg_id="s1")
    assert ack["type"] == "ack" and ack["seq"] >= 1
    assert (await http.get(f"/api/v1/documents/{doc}", headers=bob.headers)).status_code == 200
    highlight = await b.request(type="highlight_create", document_id=doc, text="carnot engines",
                                client_msg_id="h1")
    assert highlight["type"] == "ack", highlight
    # someone outside the room still cannot read it
    assert (await http.get(f"/api/v1/documents/{doc}", headers=carol.headers)).status_code == 404
    await a.close()
    await b.close()


async def test_socket_reshare_keeps_the_rooms_stronger_grant(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    doc = await _ready_document(http, alice, NOTES + b"\nA line only the re-share test has.\n")
    until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    granted = await http.post(f"/api/v1/documents/{doc}/share", headers=alice.headers,
                              json={"room_id": room, "permission": "write", "expires_at": until})
    assert granted.status_code in (200, 201), granted.text
    before = granted.json()

    a = await RoomClient.open(base_url, alice, room)
    ack = await a.request(type="document_share", document_id=doc, note="again", client_msg_id="again")
    assert ack["type"] == "ack" and ack["seq"] >= 1
    await a.close()
    shares = (await http.get(f"/api/v1/documents/{doc}/share", headers=alice.headers)).json()["shares"]
    (kept,) = [s for s in shares if s["room_id"] == room]
    assert (kept["permission"], kept["expires_at"], kept["id"]) == ("write", before["expires_at"], before["id"])


async def test_socket_highlight_is_checked_like_rest(http: httpx.AsyncClient, base_url: str,
                                                    database_url: str) -> None:
    """`highlight_create` goes through the library's one validation: a text not in the
    document, or a document not shared to the room, is a typed `error`; nothing is stored
    and nothing reaches the room."""
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    await http.post(f"/api/v1/rooms/{room}/join", headers=bob.headers)
    doc = await _ready_document(http, alice, NOTES + b"\nOnly the socket highlight test has this line.\n")
    a = await RoomClient.open(base_url, alice, room)
    watcher = await RoomClient.open(base_url, bob, room)

    unshared = await a.request(type="highlight_create", document_id=doc, text="dS = dQ/T", client_msg_id="h0")
    assert (unshared["type"], unshared["code"], unshared["ref"]) == ("error", "document_not_in_room", "h0")
    await a.request(type="document_share", document_id=doc, client_msg_id="s1")
    invented = await a.request(type="highlight_create", document_id=doc, text="entropy always decreases",
                               client_msg_id="h1")
    assert (invented["type"], invented["code"]) == ("error", "highlight_not_in_document")
    wrong_page = await a.request(type="highlight_create", document_id=doc, text="dS = dQ/T", page=7,
                                 client_msg_id="h2")
    assert (wrong_page["type"], wrong_page["code"]) == ("error", "highlight_not_on_page")
    too_long = await a.request(type="highlight_create", document_id=doc, text="x" * 5001, client_msg_id="h3")
    assert (too_long["type"], too_long["code"]) == ("error", "invalid_frame")
    marker = await a.request(type="chat_message", text="after the refusals", client_msg_id="m1")
    await watcher.wait_for(lambda f: f.get("seq") == marker["seq"])
    assert not [f for f in watcher.frames if f["type"] == "highlight_created"]

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM highlights WHERE document_id = $1", uuid.UUID(doc))
        events = await conn.fetchval(
            "SELECT count(*) FROM room_events WHERE room_id = $1 AND event_type = 'highlight_created'",
            uuid.UUID(room))
        assert (stored, events) == (0, 0)

        ok = await a.request(type="highlight_create", document_id=doc, text="dS  =  dQ/T", client_msg_id="h4")
        assert ok["type"] == "ack", ok
        created = await watcher.wait_for(lambda f: f["type"] == "highlight_created")
        assert created["highlight"]["id"] == ok["message_id"] and created["highlight"]["page"] == 1
        audited = await conn.fetchval(
            """SELECT count(*) FROM audit_log WHERE action = 'highlight.create'
               AND data->>'highlight_id' = $1""", ok["message_id"])
        assert audited == 1
    finally:
        await conn.close()
        await a.close()
        await watcher.close()


async def test_uploader_sees_ingestion_progress(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    sock = await RoomClient.open(base_url, alice, room)
    answer = await upload(http, alice, NOTES + b"\nProgress notes for the uploader.\n", "p.txt")
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job"]["id"]
    done = await sock.wait_for(lambda f: f["type"] == "notification"
                               and f["data"].get("job_id") == job_id
                               and f["data"].get("status") == "ready", timeout=120)
    assert done["kind"] == "ingest_progress" and done["data"]["progress"] == 1
    await sock.close()

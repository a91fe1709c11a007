"""The room socket on one real server (in-memory broker): handshake, frames, acks,
recovery, moderation, protection. Cross-node behaviour: tests/test_multinode.py."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roomserver.config import Settings
from roomserver.store.ports import free_port
from tests.clients import OPERATOR_TOKEN, health_detail, sign_in
from tests.library_fixtures import ingest
from tests.ws_client import RoomClient, create_room, ws_url


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    port = free_port()
    return Settings.from_env(
        {}, database_url=database_url, data_dir=Path(tmp_path_factory.mktemp("data")), port=port,
        public_origin=f"http://127.0.0.1:{port}", rate_limit_per_minute=100_000,
        ws_recovery_window=20, ws_session_recheck_seconds=1, ws_chat_per_minute=600,
        ws_auth_timeout_seconds=1, presence_leave_grace_ms=300, operator_token=OPERATOR_TOKEN,
    )


THERMO = (b"Entropy of an isolated system never decreases.\n\n"
          b"A reversible process keeps total entropy constant; dS = dQ/T along it.\n")


async def _refusal(url: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    return response.status_code, orjson.loads(response.body or b"{}")


async def test_chat_reaches_the_room_with_ack_after_commit(http: httpx.AsyncClient, base_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    b = await RoomClient.open(base_url, bob, room)
    welcome_b = b.frames[0]
    assert welcome_b["you"]["user_id"] == bob.user_id and welcome_b["room"]["id"] == room
    assert {m["user_id"] for m in welcome_b["presence"]} == {alice.user_id, bob.user_id}
    joined = await a.wait_for(lambda f: f["type"] == "user_joined" and f["user"]["user_id"] == bob.user_id)
    assert joined["room_id"] == room

    ack = await a.request(type="chat_message", text="Is entropy a state function?", client_msg_id="c-1")
    assert ack["type"] == "ack" and ack["seq"] == welcome_b["seq"] + 1
    got = await b.wait_for(lambda f: f["type"] == "new_message")
    assert got["seq"] == ack["seq"] and got["message"]["id"] == ack["message_id"]
    assert got["message"]["text"] == "Is entropy a state function?"
    assert got["message"]["user_id"] == alice.user_id

    again = await a.request(type="chat_message", text="Is entropy a state function?", client_msg_id="c-1")
    assert (again["seq"], again["message_id"]) == (ack["seq"], ack["message_id"])
    page = await http.get(f"/api/v1/rooms/{room}/messages", headers=bob.headers)
    assert [m["client_msg_id"] for m in page.json()["messages"]] == ["c-1"]

    await b.send(type="typing_start")
    typing = await a.wait_for(lambda f: f["type"] == "typing_status")
    assert typing == {"type": "typing_status", "room_id": room, "user_id": bob.user_id, "typing": True}
    await b.close()
    left = await a.wait_for(lambda f: f["type"] == "user_left")
    assert left["user_id"] == bob.user_id
    await a.close()


async def test_refusals_before_accept(http: httpx.AsyncClient, base_url: str, settings: Settings) -> None:
    alice, eve = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    private = await create_room(http, alice, room_type="private")
    url = ws_url(base_url, room)
    good = ["roomserver.v1", f"bearer.{alice.token}"]

    status, body = await _refusal(url, subprotocols=good, origin="http://evil.example")
    assert (status, body["error"]["code"]) == (403, "bad_origin")
    status, body = await _refusal(url, subprotocols=["roomserver.v1", "bearer.rs1_nope"])
    assert (status, body["error"]["code"]) == (401, "session_invalid")
    status, body = await _refusal(ws_url(base_url, private),
                                  subprotocols=["roomserver.v1", f"bearer.{eve.token}"])
    assert (status, body["error"]["code"]) == (404, "room_not_found")
    status, body = await _refusal(ws_url(base_url, str(uuid.uuid4())), subprotocols=good)
    assert status == 404
    status, body = await _refusal(ws_url(base_url, room, last_seq="x"), subprotocols=good)
    assert (status, body["error"]["code"]) == (400, "invalid_last_seq")

    revoked = await sign_in(http)
    assert (await http.post("/api/v1/auth/wallet/disconnect", headers=revoked.headers)).status_code == 200
    status, body = await _refusal(url, subprotocols=["roomserver.v1", f"bearer.{revoked.token}"])
    assert status == 401

    ok = await RoomClient.open(base_url, alice, room, origin=settings.origin)
    await ok.close()


async def test_auth_frame_handshake(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    async with connect(ws_url(base_url, room), subprotocols=["roomserver.v1"]) as conn:  # type: ignore[list-item]
        assert conn.subprotocol == "roomserver.v1"
        await conn.send(orjson.dumps({"type": "auth", "token": alice.token}).decode())
        welcome = orjson.loads(await conn.recv())
        assert welcome["type"] == "welcome" and welcome["you"]["user_id"] == alice.user_id
    async with connect(ws_url(base_url, room)) as conn:
        await conn.send('{"type":"auth","token":"rs1_forged"}')
        error = orjson.loads(await conn.recv())
        assert error["code"] == "session_invalid"
        await conn.wait_closed()
        assert conn.close_code == 4100
    async with connect(ws_url(base_url, room)) as conn:  # says nothing: timed out
        error = orjson.loads(await asyncio.wait_for(conn.recv(), 5))
        assert error["code"] == "auth_timeout"
        await conn.wait_closed()
        assert conn.close_code == 4100


async def test_bad_frames_get_typed_errors_and_oversize_closes_1009(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    for raw, code in [("{nope", "invalid_json"), ("[1]", "invalid_frame"),
                      ('{"type":"warp"}', "unknown_type"),
                      ('{"type":"chat_message","text":5,"client_msg_id":"r1"}', "invalid_frame"),
                      ('{"type":"reaction_add","message_id":"zz","emoji":"x","client_msg_id":"r2"}', "message_not_found"),
                      ('{"type":"highlight_create","document_id":"%s","text":"t"}' % uuid.uuid4(), "document_not_found"),
                      ('{"type":"auth","token":"x"}', "unexpected_frame")]:
        await a.conn.send(raw)
        error = await a.wait_for(lambda f: f["type"] == "error", timeout=3)
        assert error["code"] == code, (raw, error, a.frames)
    await a.send(type="ping")
    assert (await a.wait_for(lambda f: f["type"] == "pong")) == {"type": "pong"}
    await a.conn.send("x" * (64 * 1024 + 1))
    assert await a.closed_with() == 1009


async def test_resume_complete_and_window_exceeded(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    start = a.frames[0]["seq"]
    acks = [await a.request(type="chat_message", text=f"m{i}", client_msg_id=f"k{i}") for i in range(25)]
    seqs = [ack["seq"] for ack in acks]
    assert seqs == list(range(start + 1, start + 26))
    await a.close()

    b = await RoomClient.open(base_url, alice, room, last_seq=seqs[9])
    recovered = await b.wait_for(lambda f: f["type"] == "recovered")
    replayed = [f["seq"] for f in b.durable()]
    assert replayed == seqs[10:]
    assert recovered == {"type": "recovered", "complete": True, "from_seq": seqs[9], "to_seq": seqs[-1]}

    await b.send(type="resume", last_seq=start)  # 25 missed > window of 20
    partial = await b.wait_for(lambda f: f["type"] == "recovered")
    assert partial["complete"] is False and partial["to_seq"] == seqs[-1]
    assert [f["seq"] for f in b.durable()] == seqs[10:]  # nothing replayed: reload via REST

    texts, after = [], start
    while after is not None:
        page = (await http.get(f"/api/v1/rooms/{room}/messages", params={"after_seq": after, "limit": 10},
                               headers=alice.headers)).json()
        texts += [m["text"] for m in page["messages"]]
        after = page["next_after_seq"]
    assert texts == [f"m{i}" for i in range(25)]
    outsider = await sign_in(http)
    refused = await http.get(f"/api/v1/rooms/{room}/messages", headers=outsider.headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_member"
    await b.close()


async def test_reactions_documents_and_highlights(http: httpx.AsyncClient, base_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    made = await ingest(http, alice, THERMO, "thermo.txt", title="Thermodynamics")
    doc = made["id"]
    a = await RoomClient.open(base_url, alice, room)
    b = await RoomClient.open(base_url, bob, room)
    msg = await a.request(type="chat_message", text="hello", client_msg_id="m1")
    r1 = await b.request(type="reaction_add", message_id=msg["message_id"], emoji="👍", client_msg_id="r1")
    r2 = await a.request(type="reaction_add", message_id=msg["message_id"], emoji="👍", client_msg_id="r2")
    noop = await a.request(type="reaction_add", message_id=msg["message_id"], emoji="👍", client_msg_id="r3")
    assert r2["seq"] == r1["seq"] + 1 and "seq" not in noop
    update = await b.wait_for(lambda f: f["type"] == "reaction_updated" and f["seq"] == r2["seq"])
    assert update["reactions"] == {"👍": 2} and update["added"] is True

    share = await a.request(type="document_share", document_id=str(doc), note="chapter 3", client_msg_id="d1")
    shared = await b.wait_for(lambda f: f["type"] == "document_shared")
    assert shared["seq"] == share["seq"] and shared["title"] == "Thermodynamics"
    hl = await b.request(type="highlight_create", document_id=str(doc), text="dS = dQ/T", page=1,
                         position={"start": 1, "end": 9}, client_msg_id="h1")
    created = await a.wait_for(lambda f: f["type"] == "highlight_created")
    assert created["seq"] == hl["seq"] and created["highlight"]["page"] == 1
    assert created["highlight"]["position"] == {"start": 1, "end": 9}
    again = await b.request(type="highlight_create", document_id=str(doc), text="dS = dQ/T", client_msg_id="h1")
    assert again["seq"] == hl["seq"] and again["message_id"] == hl["message_id"]
    await a.close()
    await b.close()


async def test_moderation_over_the_socket(http: httpx.AsyncClient, base_url: str) -> None:
    owner, bob, carol = await sign_in(http), await sign_in(http), await sign_in(http)
    room = await create_room(http, owner)
    o = await RoomClient.open(base_url, owner, room)
    b = await RoomClient.open(base_url, bob, room)
    c = await RoomClient.open(base_url, carol, room)
    msg = await b.request(type="chat_message", text="spam", client_msg_id="s1")
    denied = await c.request(type="message_pin", message_id=msg["message_id"], pinned=True, client_msg_id="p0")
    assert denied["type"] == "error" and denied["code"] == "not_moderator"
    pin = await o.request(type="message_pin", message_id=msg["message_id"], pinned=True, client_msg_id="p1")
    deleted = await o.request(type="message_delete", message_id=msg["message_id"], client_msg_id="x1")
    seen = await c.wait_for(lambda f: f["type"] == "message_updated" and f["seq"] == deleted["seq"])
    assert seen["deleted"] is True and seen["by"] == owner.user_id and pin["seq"] < deleted["seq"]
    nope = await c.request(type="kick", user_id=bob.user_id, client_msg_id="k0")
    assert nope["code"] == "not_moderator"

    await o.request(type="kick", user_id=bob.user_id, reason="spam", client_msg_id="k1")
    assert await b.closed_with() == 4103
    left = await c.wait_for(lambda f: f["type"] == "user_left" and f["user_id"] == bob.user_id)
    assert left["reason"] == "kicked"
    await asyncio.sleep(0.8)  # past the leave grace: no second user_left
    assert [f for f in c.frames if f["type"] == "user_left"] == [left]
    page = (await http.get(f"/api/v1/rooms/{room}/messages", headers=owner.headers)).json()
    assert page["messages"][0]["deleted"] is True and page["messages"][0]["text"] == ""
    await o.close()
    await c.close()


async def test_deleted_message_is_replayed_without_its_text(
        http: httpx.AsyncClient, base_url: str, database_url: str) -> None:
    owner, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, owner)
    b = await RoomClient.open(base_url, bob, room)
    said = await b.request(type="chat_message", text="my phone number is 555-0199", client_msg_id="s1")
    o = await RoomClient.open(base_url, owner, room)
    deleted = await o.request(type="message_delete", message_id=said["message_id"], client_msg_id="x1")
    assert deleted["type"] == "ack"
    await b.close()
    await o.close()

    late = await RoomClient.open(base_url, owner, room, last_seq=said["seq"] - 1)
    await late.wait_for(lambda f: f["type"] == "recovered")
    replayed = [f for f in late.frames if f["type"] != "welcome" and f.get("seq") in (said["seq"], deleted["seq"])]
    await late.close()
    assert [f["type"] for f in replayed] == ["new_message", "message_updated"]
    message = replayed[0]["message"]
    assert (message["id"], message["text"], message["deleted"]) == (said["message_id"], "", True)
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetch("SELECT payload::text AS p FROM room_events WHERE room_id = $1",
                                  uuid.UUID(room))
    finally:
        await conn.close()
    assert stored and not any("555-0199" in row["p"] for row in stored)


async def test_revoked_session_is_closed(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    assert (await http.post("/api/v1/auth/wallet/disconnect", headers=alice.headers)).status_code == 200
    assert await a.closed_with(timeout=5) == 4105


async def test_rate_limit_then_flood_close(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    for i in range(200):
        await a.send(type="chat_message", text="flood", client_msg_id=f"f{i}")
    assert await a.closed_with() == 4004
    limited = [f for f in a.frames if f["type"] == "error"]
    assert limited and all(f["code"] == "rate_limited" and f["retry_after"] > 0 for f in limited)
    acked = [f for f in a.frames if f["type"] == "ack"]
    assert 100 <= len(acked) < 200  # the burst of WS_CHAT_PER_MINUTE=600 plus refill
    page = (await http.get(f"/api/v1/rooms/{room}/messages", params={"limit": 200},
                           headers=alice.headers)).json()
    assert [m["client_msg_id"] for m in page["messages"]] == [f["client_msg_id"] for f in acked]


async def test_health_reports_the_broker(http: httpx.AsyncClient) -> None:
    health = (await health_detail(http)).json()
    assert health["components"]["redis"]["ok"] is True
    assert "in-memory" in health["components"]["redis"]["mode"]


async def test_welcome_seq_then_live_without_gaps(http: httpx.AsyncClient, base_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    # paced so that bob's connect finishes well inside this module's 20-event recovery window
    writer = asyncio.create_task(_chat(a, 60, pause=0.03))
    await asyncio.sleep(0.05)
    b = await RoomClient.open(base_url, bob, room, last_seq=0)  # joins mid-stream, resumes from 0
    await writer
    last = a.durable()[-1]["seq"] if a.durable() else 0
    await b.wait_for(lambda f: f.get("seq") == last and f["type"] == "new_message")
    assert [f["seq"] for f in b.durable()] == list(range(1, last + 1))
    await a.close()
    await b.close()


async def _chat(client: RoomClient, n: int, pause: float = 0) -> None:
    for i in range(n):
        await client.request(type="chat_message", text=f"x{i}", client_msg_id=f"w{i}")
        if pause:
            await asyncio.sleep(pause)

"""The achievement table (`achievements.FIRSTS`) fed by the services' hooks: doing each thing
again, over REST or the socket, earns nothing more; each first is announced once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from roomserver.achievements import FIRSTS, Achievements, Event
from roomserver.identity import users
from roomserver.identity.wallet import Wallet
from roomserver.realtime.history import Author, History
from roomserver.rooms import RoomDraft, RoomService
from roomserver.store.db import create_pool
from tests.clients import sign_in
from tests.library_fixtures import ingest, upload
from tests.ws_client import RoomClient, create_room

NOTES = b"Osmosis moves water across a membrane toward the higher solute concentration.\n"
QUOTE = "Osmosis moves water across a membrane"


class Heard:
    """An `on_event` hook that records what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, uuid.UUID, uuid.UUID | None]] = []

    async def __call__(self, event: Event, user_id: uuid.UUID, room_id: uuid.UUID | None) -> None:
        self.events.append((event, user_id, room_id))


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def test_every_event_of_the_table_names_a_seeded_achievement(pool: asyncpg.Pool) -> None:
    seeded = {r["code"] for r in await pool.fetch("SELECT code FROM achievements")}
    assert set(FIRSTS.values()) <= seeded
    assert len(set(FIRSTS.values())) == len(FIRSTS)  # no achievement earned two ways


async def test_the_services_report_each_committed_action_once(pool: asyncpg.Pool) -> None:
    heard = Heard()
    async with pool.acquire() as conn:
        user = (await users.upsert_by_wallet(conn, Wallet.generate().address))[0].id
    rooms = RoomService(pool, on_event=heard)
    room = await rooms.create(user, RoomDraft(name="Algebra", room_type="public"))
    assert heard.events == [("room_created", user, None)]

    for group_commit in (True, False):
        heard.events.clear()
        history = History(pool, group_commit=group_commit, on_event=heard)
        first = await history.post_message(room.id, Author(user), "hi", client_msg_id=f"c{group_commit}")
        resent = await history.post_message(room.id, Author(user), "hi", client_msg_id=f"c{group_commit}")
        assert resent.seq == first.seq and not resent.fresh
        reply = await history.post_message(room.id, Author(user), "re", reply_to=first.message_id)
        assert reply.fresh
        assert heard.events == [("message_posted", user, room.id)] * 2  # not for the resend


async def test_recording_an_event_awards_its_first_once(pool: asyncpg.Pool) -> None:
    announced: list[str] = []

    async def announce(user_id: uuid.UUID, room_id: uuid.UUID | None, achievement: Any) -> None:
        announced.append(achievement.code)

    async with pool.acquire() as conn:
        user = (await users.upsert_by_wallet(conn, Wallet.generate().address))[0].id
    for _ in range(2):  # a fresh service (another node, a restart) knows nothing in memory
        achievements = Achievements(pool, announce=announce)
        for event in FIRSTS:
            await achievements.record(event, user)
            await achievements.record(event, user)
    assert sorted(announced) == sorted(FIRSTS.values())
    earned = [a["code"] for a in await Achievements(pool).of_user(user)]
    assert sorted(earned) == sorted(FIRSTS.values())


def _earned(frames: list[dict[str, Any]]) -> list[str]:
    """The achievement codes announced on a socket: to the room, or to the user."""
    codes = []
    for f in frames:
        if f["type"] == "achievement_earned":
            codes.append(f["achievement"]["code"])
        elif f["type"] == "notification" and f.get("kind") == "achievement_earned":
            codes.append(f["data"]["achievement"]["code"])
    return codes


async def test_each_first_is_awarded_once_whatever_path_repeats_it(url: str, client: httpx.AsyncClient) -> None:
    alice = await sign_in(client)
    room = await create_room(client, alice, name="Biology")
    await create_room(client, alice, name="Chemistry")  # a second room earns nothing
    sock = await RoomClient.open(url, alice, room)

    doc = await ingest(client, alice, NOTES, "osmosis.txt")
    again = await upload(client, alice, NOTES, "osmosis-again.txt")  # the same bytes: a duplicate
    assert again.status_code == 200 and again.json()["duplicate"] is True
    other = await upload(client, alice, b"Diffusion needs no membrane.\n", "diffusion.txt")
    assert other.status_code == 202  # a second document earns nothing

    path = f"/api/v1/documents/{doc['id']}"
    alone = await client.post(f"{path}/highlights", headers=alice.headers, json={"text": QUOTE})
    assert alone.status_code == 201, alone.text
    shared = await client.post(f"{path}/share", headers=alice.headers, json={"room_id": room})
    assert shared.status_code == 201, shared.text
    in_room = await client.post(f"{path}/highlights", headers=alice.headers,
                                json={"text": "water across a membrane", "room_id": room})
    assert in_room.status_code == 201, in_room.text
    by_socket = await sock.request(type="highlight_create", document_id=doc["id"], text="toward the higher",
                                   client_msg_id="h1")
    assert by_socket["type"] == "ack", by_socket

    for i in range(3):
        ack = await sock.request(type="chat_message", text=f"hello {i}", client_msg_id=f"m{i}")
        assert ack["type"] == "ack", ack
    resent = await sock.request(type="chat_message", text="hello 0", client_msg_id="m0")  # a resend
    assert resent["type"] == "ack"

    mine = (await client.get("/api/v1/users/achievements", headers=alice.headers)).json()
    codes = [a["code"] for a in mine["achievements"]]
    assert sorted(codes) == sorted(FIRSTS.values())  # each first, once
    assert mine["xp"] == 20 + 25 + 15 + 10
    if "first_message" not in _earned(sock.frames):  # it may have come before an ack
        await sock.wait_for(lambda f: "first_message" in _earned([f]))
    await asyncio.sleep(0.5)  # anything announced twice would have arrived by now
    with contextlib.suppress(TimeoutError):
        await sock.wait_for(lambda f: False, timeout=0.2)
    announced = _earned(sock.frames)
    # the room was created before the socket opened: its achievement was announced to nobody here
    assert sorted(announced) == ["first_highlight", "first_message", "first_upload"]
    await sock.close()

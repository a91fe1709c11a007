"""The achievement table (`achievements.FIRSTS`) fed by the services' hooks: doing each thing
again, over REST or the socket, earns nothing more; each first is announced once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx

from roomserver.achievements import FIRSTS
from tests.clients import sign_in
from tests.library_fixtures import ingest, upload
from tests.ws_client import RoomClient, create_room

NOTES = b"Osmosis moves water across a membrane toward the higher solute concentration.\n"
QUOTE = "Osmosis moves water across a membrane"


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

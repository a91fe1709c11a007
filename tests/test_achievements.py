"""Achievements: earned once, worth XP (and levels), announced where they were earned."""

from __future__ import annotations

import httpx

from tests.clients import sign_in
from tests.ws_client import RoomClient, create_room


async def test_firsts_are_awarded_once_and_announced(http: httpx.AsyncClient, base_url: str) -> None:
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    mine = (await http.get("/api/v1/users/achievements", headers=alice.headers)).json()
    assert [a["code"] for a in mine["achievements"]] == ["first_room"]
    assert mine["xp"] == 20 and mine["level"] == 1

    watcher = await RoomClient.open(base_url, bob, room)
    talker = await RoomClient.open(base_url, alice, room)
    for i in range(3):
        ack = await talker.request(type="chat_message", text=f"hello {i}", client_msg_id=f"m{i}")
        assert ack["type"] == "ack"
    earned = await watcher.wait_for(lambda f: f["type"] == "achievement_earned")
    assert earned["user_id"] == alice.user_id
    assert earned["achievement"]["code"] == "first_message" and earned["achievement"]["xp"] == 10
    if not any(f["type"] == "achievement_earned" for f in talker.frames):  # may precede an ack
        await talker.wait_for(lambda f: f["type"] == "achievement_earned")

    after = (await http.get("/api/v1/users/achievements", headers=alice.headers)).json()
    assert [a["code"] for a in after["achievements"]] == ["first_room", "first_message"]
    assert after["xp"] == 30
    profile = (await http.get("/api/v1/users/profile", headers=alice.headers)).json()
    assert profile["xp"] == 30
    # three messages, one award: nobody saw a second achievement_earned
    assert sum(f["type"] == "achievement_earned" for f in watcher.frames) == 1
    await watcher.close()
    await talker.close()


async def test_outside_a_room_the_user_is_notified(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    home = await create_room(http, alice, name="Home")
    sock = await RoomClient.open(base_url, alice, home)
    answer = await http.post("/api/v1/documents/upload", headers=alice.headers,
                             files={"file": ("n.txt", b"Notes about osmosis and diffusion.\n", "text/plain")})
    assert answer.status_code == 202, answer.text
    note = await sock.wait_for(lambda f: f["type"] == "notification" and f["kind"] == "achievement_earned")
    assert note["data"]["achievement"]["code"] == "first_upload"
    await sock.close()

"""`resume` cannot amplify (issue 12 item 8): a replay is capped in bytes, and a socket may ask
for only a few per minute; refused ones count toward the flood close (4004)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from roomserver.config import Settings
from roomserver.errors import CloseCode
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.ws_client import RoomClient, create_room

REPLAY_MAX_BYTES = 8000
TEXT = "y" * 1000  # each event's encoded frame is a little over 1000 bytes


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    port = free_port()
    return Settings.from_env(
        {}, database_url=database_url, data_dir=Path(tmp_path_factory.mktemp("data")), port=port,
        public_origin=f"http://127.0.0.1:{port}", rate_limit_per_minute=100_000,
        ws_chat_per_minute=100_000, ws_replay_max_bytes=REPLAY_MAX_BYTES, ws_resume_per_minute=6,
    )


async def test_a_replay_over_the_byte_cap_answers_incomplete(http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    start = a.frames[0]["seq"]
    for i in range(20):  # ~20 KB of events: within the 1000-event window, over the 8000-byte cap
        await a.request(type="chat_message", text=TEXT, client_msg_id=f"big{i}")
    await a.close()

    far = await RoomClient.open(base_url, alice, room, last_seq=start)
    recovered = await far.wait_for(lambda f: f["type"] == "recovered")
    assert recovered["complete"] is False and far.durable() == []
    near = await RoomClient.open(base_url, alice, room, last_seq=start + 15)  # 5 events, ~5 KB
    recovered = await near.wait_for(lambda f: f["type"] == "recovered")
    assert recovered["complete"] is True
    assert [f["seq"] for f in near.durable()] == list(range(start + 16, start + 21))
    await far.close()
    await near.close()


async def test_resumes_are_paced_per_socket_and_a_resume_flood_closes_4004(
        http: httpx.AsyncClient, base_url: str) -> None:
    alice = await sign_in(http)
    room = await create_room(http, alice)
    a = await RoomClient.open(base_url, alice, room)
    seq = a.frames[0]["seq"]
    for i in range(5):
        await a.send(type="resume", last_seq=seq, client_msg_id=f"r{i}")
    answers = [await a.wait_for(lambda f: f["type"] in ("recovered", "error")) for _ in range(5)]
    assert [f["type"] for f in answers] == ["recovered"] * 3 + ["error"] * 2  # a burst of 3
    assert all(f["code"] == "rate_limited" and f["retry_after"] > 0 for f in answers[3:])
    assert [f["ref"] for f in answers[3:]] == ["r3", "r4"]

    other = await RoomClient.open(base_url, alice, room)  # the budget is the socket's own
    await other.send(type="resume", last_seq=seq)
    assert (await other.wait_for(lambda f: f["type"] in ("recovered", "error")))["type"] == "recovered"

    for i in range(40):  # refusals are strikes: about 20 more close the socket
        await a.send(type="resume", last_seq=seq, client_msg_id=f"f{i}")
    assert await a.closed_with() == CloseCode.FLOOD
    refused = [f for f in a.frames if f["type"] == "error"]
    assert 20 <= len(refused) < 42
    ack = await other.request(type="chat_message", text="still fine", client_msg_id="ok")
    assert ack["type"] == "ack"
    await other.close()

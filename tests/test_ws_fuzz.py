"""Hypothesis throws arbitrary and malformed frames at a live socket: every one is answered
with a typed frame, the only close is the flood close, and the server keeps serving."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from roomserver.errors import CloseCode
from roomserver.protocol import CLIENT_TYPES, DURABLE_TYPES
from tests.clients import sign_in
from tests.ws_client import RoomClient, create_room

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_TYPES - {"ping", "typing_start", "typing_stop", "socratic_query",
                                                   "socratic_cancel"})) | st.text(max_size=20)},
    optional={"text": json_values, "client_msg_id": json_values, "message_id": json_values,
              "emoji": json_values, "last_seq": json_values, "document_id": json_values,
              "user_id": json_values, "pinned": json_values, "token": json_values},
)
raw_frames = st.one_of(
    frame_like.map(lambda f: orjson.dumps(f).decode()),
    json_values.map(lambda v: orjson.dumps(v).decode()),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.integers(1000, 60_000).map(lambda n: '{"type":"chat_message","text":"' + "a" * n + '"}'),
)

ANSWERS = {"ack", "error", "recovered", "user_left"} | DURABLE_TYPES
"""An accepted frame without client_msg_id is answered by its broadcast."""


async def test_arbitrary_frames_get_typed_answers(http: httpx.AsyncClient, base_url: str) -> None:
    """Every frame gets a typed answer; the only close is the flood close (4004) once more than
    FLOOD_STRIKES refused frames came faster than one a second, and a new socket then works."""
    alice = await sign_in(http)
    room = await create_room(http, alice)
    live = {"client": await RoomClient.open(base_url, alice, room)}
    counter = iter(range(10**9))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=raw_frames)
    async def one(raw: str | bytes) -> None:
        client = live["client"]
        if client.conn.close_code is not None:  # the previous frame was the flood's last straw
            assert client.conn.close_code == CloseCode.FLOOD
            client = live["client"] = await RoomClient.open(base_url, alice, room)
        probe = f"probe-{next(counter)}"
        await client.conn.send(raw)
        answers: list[dict[str, Any]] = []
        try:
            await client.send(type="ping", client_msg_id=probe)
            while True:  # everything up to the pong of our probe answers `raw`
                frame = await client.next(timeout=10)
                if frame["type"] == "pong":
                    break
                answers.append(frame)
        except ConnectionClosed:
            assert client.conn.close_code == CloseCode.FLOOD, client.conn.close_code
        typed = [f for f in answers if f["type"] in ANSWERS]
        assert typed, (raw, answers)
        for f in typed:
            if f["type"] == "error":
                assert isinstance(f["code"], str) and f["code"] and "Traceback" not in f["message"]

    await _run(one)
    client = live["client"]
    if client.conn.close_code is not None:
        assert client.conn.close_code == CloseCode.FLOOD
        client = await RoomClient.open(base_url, alice, room)
    ok = await client.request(type="chat_message", text="still here", client_msg_id="last")
    assert ok["type"] == "ack"
    await client.close()


async def _run(test: Any) -> None:
    """Run a hypothesis test whose body is async, on the running loop."""
    import asyncio

    loop = asyncio.get_running_loop()
    inner = test.hypothesis.inner_test

    def sync(**kwargs: Any) -> None:
        fut = asyncio.run_coroutine_threadsafe(inner(**kwargs), loop)
        fut.result(timeout=60)

    test.hypothesis.inner_test = sync
    await asyncio.to_thread(test)

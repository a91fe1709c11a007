"""The tutor end to end: the app under uvicorn (two nodes sharing PostgreSQL and Redis), the
real `anthropic` SDK against a local server speaking the streaming Messages protocol, REST
with server-sent events, and room sockets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from roomserver.config import Settings
from roomserver.library.embeddings import MiniLMEmbedder
from roomserver.store.db import create_pool
from roomserver.store.ports import free_port
from tests.clients import SignedInUser, sign_in
from tests.fake_anthropic import FakeAnthropic, Reply
from tests.library_fixtures import serve
from tests.model_fixtures import shared_minilm
from tests.tutor_world import ENZYME_PAGES, add_document
from tests.ws_client import RoomClient, create_room

QUESTION = "Why does an enzyme stop working at high temperature?"
PIECES = ["What holds ", "the enzyme's ", "shape? ", "Look at [Biology Textbook p.14]."]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return shared_minilm()


def node_settings(database_url: str, redis: str, fake: FakeAnthropic, data: Path) -> Settings:
    port = free_port()
    return Settings.from_env(
        {}, database_url=database_url, redis_url=redis, data_dir=data, port=port,
        public_origin=f"http://127.0.0.1:{port}", rate_limit_per_minute=100_000,
        anthropic_api_key=fake.api_key, anthropic_base_url=fake.url, tutor_model="claude-test-2",
        tutor_max_retries=0, tutor_timeout_seconds=5.0, tutor_user_questions_per_minute=3)


@pytest.fixture(scope="module")
async def nodes(database_url: str, redis_url: str, fake: FakeAnthropic,
                embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[str]]:
    one = node_settings(database_url, redis_url, fake, tmp_path_factory.mktemp("node1"))
    two = node_settings(database_url, redis_url, fake, tmp_path_factory.mktemp("node2"))
    async with serve(one, embedder) as url1, serve(two, embedder) as url2:
        yield [url1, url2]


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def http(nodes: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nodes[0], timeout=30) as client:
        yield client


async def room_with_textbook(http: httpx.AsyncClient, pool: asyncpg.Pool, embedder: MiniLMEmbedder,
                             owner: SignedInUser, *members: SignedInUser) -> str:
    room = await create_room(http, owner)
    for member in members:
        joined = await http.post(f"/api/v1/rooms/{room}/join", headers=member.headers)
        assert joined.status_code == 200, joined.text
    await add_document(pool, embedder, uuid.UUID(owner.user_id), "Biology Textbook", ENZYME_PAGES,
                       rooms=[uuid.UUID(room)])
    return room


async def seen_or_next(client: RoomClient, match: Any) -> dict[str, Any]:
    """A frame already received that matches, else the next one that does."""
    for frame in client.frames:
        if match(frame):
            return frame
    return await client.wait_for(match, timeout=10)


async def sse_frames(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames, event = [], None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            assert event == "socratic_response"
            frames.append(orjson.loads(line.removeprefix("data: ")))
    return frames


async def test_rest_ask_streams_server_sent_events_and_lists_threads(
        http: httpx.AsyncClient, pool: asyncpg.Pool, embedder: MiniLMEmbedder, fake: FakeAnthropic) -> None:
    owner, student = await sign_in(http), await sign_in(http)
    room = await room_with_textbook(http, pool, embedder, owner, student)
    fake.script(Reply(PIECES))
    async with http.stream("POST", f"/api/v1/rooms/{room}/tutor", headers=student.headers,
                           json={"question": QUESTION}) as response:
        frames = await sse_frames(response)

    assert [f["index"] for f in frames] == list(range(len(frames)))
    assert frames[0]["question"] == QUESTION and frames[0]["mode"] == "claude"
    assert "[Biology Textbook p.14]" in [s["cite"] for s in frames[0]["sources"]]
    # deltas are the model's pieces, regrouped at the sanitiser's safe cuts (tutor/sanitize.py)
    assert "".join(f["text"] for f in frames[1:-1]) == "".join(PIECES) and len(frames) > 3
    done = frames[-1]
    assert done["done"] and done["text"] == "".join(PIECES) and done["message_seq"] >= 1
    assert fake.requests[-1].body["model"] == "claude-test-2"

    threads = (await http.get(f"/api/v1/rooms/{room}/tutor/threads", headers=owner.headers)).json()
    assert [t["id"] for t in threads["threads"]] == [done["thread_id"]]
    turns = (await http.get(f"/api/v1/rooms/{room}/tutor/threads/{done['thread_id']}",
                            headers=owner.headers)).json()["turns"]
    assert [(t["question"], t["answer"], t["status"]) for t in turns] == [(QUESTION, "".join(PIECES), "done")]
    assert turns[0]["input_tokens"] == 120 and turns[0]["output_tokens"] == 30

    # the stored answer is in the room's history like any message
    stored = await pool.fetchrow("SELECT message_type, content, metadata FROM chat_messages WHERE id = $1",
                                 uuid.UUID(done["message_id"]))
    assert stored["message_type"] == "tutor" and stored["content"] == "".join(PIECES)


async def test_rest_refusals(http: httpx.AsyncClient, pool: asyncpg.Pool, embedder: MiniLMEmbedder) -> None:
    owner, student, stranger = await sign_in(http), await sign_in(http), await sign_in(http)
    room = await room_with_textbook(http, pool, embedder, owner, student)
    url = f"/api/v1/rooms/{room}/tutor"
    refused = await http.post(url, headers=stranger.headers, json={"question": QUESTION})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "not_member")
    missing = await http.get(f"/api/v1/rooms/{uuid.uuid4()}/tutor/threads", headers=owner.headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "room_not_found")
    foreign = await http.post(url, headers=student.headers,
                              json={"question": QUESTION, "thread_id": str(uuid.uuid4())})
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "thread_not_found")
    for _ in range(3):  # TUTOR_USER_QUESTIONS_PER_MINUTE=3 on these nodes
        async with http.stream("POST", url, headers=owner.headers, json={"question": QUESTION}) as ok:
            assert (await sse_frames(ok))[-1]["done"]
    limited = await http.post(url, headers=owner.headers, json={"question": QUESTION})
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    options = await http.put(f"/api/v1/rooms/{room}/tutor/options", headers=student.headers,
                             json={"include_public": True})
    assert (options.status_code, options.json()["error"]["code"]) == (403, "not_owner")


async def test_socket_question_reaches_members_on_two_nodes_in_order(
        http: httpx.AsyncClient, nodes: list[str], pool: asyncpg.Pool, embedder: MiniLMEmbedder,
        fake: FakeAnthropic) -> None:
    owner, student = await sign_in(http), await sign_in(http)
    room = await room_with_textbook(http, pool, embedder, owner, student)
    asker = await RoomClient.open(nodes[0], student, room)
    watcher = await RoomClient.open(nodes[1], owner, room)
    try:
        fake.script(Reply(PIECES, delay=0.05))
        await asker.send(type="socratic_query", question=QUESTION, client_msg_id="ask-1")
        for client in (asker, watcher):
            done = await client.wait_for(lambda f: f["type"] == "socratic_response" and f["done"], timeout=15)
            answer = [f for f in client.frames
                      if f["type"] == "socratic_response" and f["answer_id"] == done["answer_id"]]
            assert [f["index"] for f in answer] == list(range(len(answer)))
            assert "".join(f["text"] for f in answer[1:-1]) == "".join(PIECES)  # regrouped at safe cuts
            assert len(answer) > 3 and all(f["ephemeral"] for f in answer[1:-1])
            assert answer[0]["ref"] == "ask-1" and answer[0]["asked_by"] == student.user_id
            stored = await seen_or_next(client, lambda f: f["type"] == "new_message"
                                        and f["message"]["kind"] == "tutor")
            assert stored["seq"] == done["message_seq"] and stored["message"]["text"] == "".join(PIECES)
            sources = stored["message"]["metadata"]["sources"]
            assert "[Biology Textbook p.14]" in [s["cite"] for s in sources]

        # a late joiner resuming from before the question gets the stored answer from history
        late = await RoomClient.open(nodes[1], owner, room, last_seq=0)
        try:
            replayed = await late.wait_for(lambda f: f["type"] == "new_message"
                                           and f["message"]["kind"] == "tutor", timeout=10)
            assert replayed["message"]["metadata"]["sources"] == sources
        finally:
            await late.close()
    finally:
        await asker.close()
        await watcher.close()


async def test_socket_cancel_and_typed_errors(
        http: httpx.AsyncClient, nodes: list[str], pool: asyncpg.Pool, embedder: MiniLMEmbedder,
        fake: FakeAnthropic) -> None:
    owner, student = await sign_in(http), await sign_in(http)
    room = await room_with_textbook(http, pool, embedder, owner, student)
    asker = await RoomClient.open(nodes[0], student, room)
    try:
        fake.script(Reply(["one ", "two ", "three ", "four ", "five"], delay=0.5))
        await asker.send(type="socratic_query", question=QUESTION, client_msg_id="ask-2")
        await asker.wait_for(lambda f: f["type"] == "socratic_response" and f["text"] == "one ")
        await asker.send(type="socratic_cancel")
        done = await asker.wait_for(lambda f: f["type"] == "socratic_response" and f["done"], timeout=10)
        assert done["error"] == "cancelled" and "five" not in done["text"]
        nothing = await asker.request(type="socratic_cancel", client_msg_id="c-2")
        assert (nothing["type"], nothing["code"]) == ("error", "answer_not_found")
        bad = await asker.request(type="socratic_query", question="hi", thread_id="nope", client_msg_id="q-3")
        assert (bad["type"], bad["code"]) == ("error", "thread_not_found")
    finally:
        await asker.close()


async def test_stored_answer_and_chat_message_are_events_of_one_shape(
        http: httpx.AsyncClient, nodes: list[str], pool: asyncpg.Pool, embedder: MiniLMEmbedder,
        fake: FakeAnthropic) -> None:
    """Both go through `History` (the one durable writer): the same `room_events` row shape,
    and `resume` replays exactly the frames that were broadcast live."""
    owner, student = await sign_in(http), await sign_in(http)
    room = await room_with_textbook(http, pool, embedder, owner, student)
    asker = await RoomClient.open(nodes[0], student, room)
    try:
        chat_ack = await asker.request(type="chat_message", text="before asking", client_msg_id="m-1")
        fake.script(Reply(PIECES))
        await asker.send(type="socratic_query", question=QUESTION, client_msg_id="ask-3")
        done = await asker.wait_for(lambda f: f["type"] == "socratic_response" and f["done"], timeout=15)
        await seen_or_next(asker, lambda f: f.get("seq") == done["message_seq"])
        live = {f["seq"]: f for f in asker.frames if f["type"] == "new_message"}
    finally:
        await asker.close()
    chat, answer = live[chat_ack["seq"]], live[done["message_seq"]]
    assert (chat["message"]["kind"], answer["message"]["kind"]) == ("text", "tutor")

    rows = {row["seq"]: row for row in await pool.fetch(
        "SELECT seq, event_type, actor_id, payload FROM room_events WHERE room_id = $1 AND seq = ANY($2)",
        uuid.UUID(room), [chat["seq"], answer["seq"]])}
    for frame in (chat, answer):
        row = rows[frame["seq"]]
        assert (row["event_type"], str(row["actor_id"])) == ("new_message", student.user_id)
        assert row["payload"] == frame  # what was stored is what was broadcast
    common = {"id", "user_id", "text", "kind", "created_at", "pinned", "deleted"}
    assert set(chat) == set(answer) == {"type", "room_id", "seq", "message"}
    assert set(chat["message"]) - {"client_msg_id"} == common
    assert set(answer["message"]) - {"metadata"} == common
    assert answer["message"]["user_id"] == student.user_id == chat["message"]["user_id"]

    late = await RoomClient.open(nodes[1], owner, room, last_seq=chat["seq"] - 1)
    try:
        await late.wait_for(lambda f: f["type"] == "recovered")
        replayed = {f["seq"]: f for f in late.frames if f["type"] == "new_message"}
    finally:
        await late.close()
    assert replayed[chat["seq"]] == chat and replayed[answer["seq"]] == answer

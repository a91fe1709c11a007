"""History on the real Postgres: gap-free seqs under concurrency, idempotent resends, range
reads; and the node's sweep delivering an event whose publish was lost."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import orjson
import pytest

from roomserver import errors
from roomserver.config import Settings
from roomserver.identity.sessions import SessionStore
from roomserver.realtime.broker import MemoryBroker
from roomserver.realtime.history import Author, History
from roomserver.realtime.hub import Connection
from roomserver.realtime.node import Caller, Realtime, RealtimeConfig
from roomserver.realtime.presence import MemoryPresence
from roomserver.rooms import RoomDraft, RoomService
from roomserver.store.db import create_pool
from tests.world import add_room, add_user


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


async def _room(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    user, _ = await add_user(pool)
    return await add_room(pool, user), user


async def test_concurrent_writers_get_gap_free_seqs_and_resends_write_once(pool: asyncpg.Pool) -> None:
    history = History(pool)
    room, user = await _room(pool)
    author = Author(user, "alice")
    written = await asyncio.gather(*(history.post_message(room, author, f"m{i}", client_msg_id=f"c{i}")
                                     for i in range(40)))
    assert sorted(w.seq for w in written) == list(range(1, 41))  # type: ignore[type-var]
    resent = await asyncio.gather(*(history.post_message(room, author, "again", client_msg_id="c7")
                                    for _ in range(5)))
    original = next(w for w in written if w.message_id and w.frame and '"c7"' in w.frame)
    assert {(w.seq, w.message_id, w.fresh, w.frame) for w in resent} == {(original.seq, original.message_id, False, None)}
    assert await history.current_seq(str(room)) == 40
    events = await history.fetch_range(str(room), 10, 15)
    assert [seq for seq, _ in events] == [11, 12, 13, 14, 15]
    assert all('"type": "new_message"' in text for _, text in events)
    rows = await history.messages(room, 38, 10)
    assert [r["seq"] for r in rows] == [39, 40]


async def test_failed_write_gives_its_seq_back(pool: asyncpg.Pool) -> None:
    history = History(pool)
    room, user = await _room(pool)
    await history.post_message(room, Author(user), "one")
    with pytest.raises(asyncpg.CheckViolationError):
        await history.post_message(room, Author(user), "x" * 9000)  # over the column's check
    second = await history.post_message(room, Author(user), "two")
    assert second.seq == 2


class LosingBroker(MemoryBroker):
    """A node that crashed between commit and publish, as far as subscribers can tell."""

    async def publish(self, channel: str, data: bytes | str) -> None:
        return None


class Socket:
    def __init__(self) -> None:
        self.frames: list[str] = []

    def write(self, text: str) -> bool:
        self.frames.append(text)
        return True

    async def send(self, text: str) -> None:
        self.frames.append(text)

    async def close(self, code: int, reason: str) -> None:
        return None


async def test_sweep_delivers_a_lone_event_whose_publish_was_lost(pool: asyncpg.Pool) -> None:
    history = History(pool)
    realtime = Realtime(broker=LosingBroker(), store=MemoryPresence(), history=history,
                        session_live=SessionStore(pool, timedelta(hours=1)).is_live,
                        config=dataclasses.replace(RealtimeConfig.from_settings(Settings()),
                                                   sweep_interval=0.2, presence_interval=0.2))
    room, user = await _room(pool)
    await realtime.start()
    try:
        socket = Socket()
        conn = Connection(socket, str(room), str(user))
        caller = Caller(room_id=room, user_id=user, session_id=uuid.uuid4(), username=None,
                        wallet_address="w", role="owner")
        seq, _ = await realtime.attach(conn, caller)
        written = await history.post_message(room, Author(user), "lonely")  # committed, never published
        for _ in range(50):
            if any('"lonely"' in f for f in socket.frames):
                break
            await asyncio.sleep(0.1)
        delivered = [f for f in socket.frames if '"new_message"' in f]
        assert len(delivered) == 1 and f'"seq": {written.seq}' in delivered[0] and written.seq == seq + 1
        await realtime.detach(conn, caller)
    finally:
        await realtime.close()


async def test_group_commit_batches_rooms_keeps_seqs_gap_free_and_isolates_failures(pool: asyncpg.Pool) -> None:
    history = History(pool)
    (room_a, user), (room_b, _) = await _room(pool), await _room(pool)
    author = Author(user, "alice")
    posts = [history.post_message(room, author, f"{tag}{i}", client_msg_id=f"{tag}{i}")
             for i in range(30) for room, tag in ((room_a, "a"), (room_b, "b"))]
    posts.append(history.post_message(room_a, author, "dup", client_msg_id="a3"))  # resend in flight
    written = await asyncio.gather(*posts)
    bad = await asyncio.gather(history.post_message(room_b, author, "x" * 9000),  # fail alone
                               history.post_message(uuid.uuid4(), author, "nowhere"),
                               history.post_message(room_a, author, "a30"), return_exceptions=True)
    assert isinstance(bad[0], asyncpg.CheckViolationError) and isinstance(bad[1], errors.NotFound)
    assert not isinstance(bad[2], BaseException) and bad[2].seq == 31
    a = [w for w, p in zip(written[:60], range(60), strict=True) if p % 2 == 0]
    b = [w for w, p in zip(written[:60], range(60), strict=True) if p % 2 == 1]
    assert sorted(w.seq for w in a) == list(range(1, 31)) and sorted(w.seq for w in b) == list(range(1, 31))
    assert written[60].fresh is False and written[60].seq == a[3].seq and written[60].message_id == a[3].message_id
    assert await history.current_seq(str(room_a)) == 31 and await history.current_seq(str(room_b)) == 30
    events = await history.fetch_range(str(room_a), 0, 30)
    assert [seq for seq, _ in events] == list(range(1, 31))
    rows = await history.messages(room_b, 0, 100)
    assert [r["seq"] for r in rows] == list(range(1, 31))
    by_seq = {w.seq: w for w in a}
    for seq, text in events:  # the stored event is the frame that was published
        assert orjson.loads(text) == orjson.loads(by_seq[seq].frame)


async def test_socket_writes_are_refused_once_the_writer_is_removed_and_a_racing_ban_loses_nothing(
        pool: asyncpg.Pool) -> None:
    rooms = RoomService(pool)
    owner = await pool.fetchval("INSERT INTO users (wallet_address) VALUES ($1) RETURNING id", uuid.uuid4().hex)
    member = await pool.fetchval("INSERT INTO users (wallet_address) VALUES ($1) RETURNING id", uuid.uuid4().hex)
    room = (await rooms.create(owner, RoomDraft(name="r", room_type="public"))).id
    await rooms.admit(member, "w", room)
    history, author = History(pool), Author(member, "m")
    first = await history.post_message(room, author, "hello", member=True)
    assert first.seq == 1

    posts = [history.post_message(room, author, f"m{i}", client_msg_id=f"m{i}", member=True,
                                  reply_to=None if i % 3 else first.message_id) for i in range(60)]
    outcomes = await asyncio.gather(*posts[:30], rooms.ban(room, owner, member, "spam"), *posts[30:],
                                    return_exceptions=True)
    results = [o for i, o in enumerate(outcomes) if i != 30]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, errors.Forbidden) and r.code == "not_member" for r in refused)
    written = [r for r in results if not isinstance(r, BaseException)]
    stored = {row["client_msg_id"] for row in await pool.fetch(
        "SELECT client_msg_id FROM chat_messages WHERE room_id = $1 AND client_msg_id IS NOT NULL", room)}
    assert {w.message_id for w in written} <= {str(r["id"]) for r in await pool.fetch(
        "SELECT id FROM chat_messages WHERE room_id = $1", room)}, "an acknowledged write was lost"
    assert len(stored) == len(written), "a refused write was stored"
    banned_at = await pool.fetchval("SELECT left_at FROM room_participants WHERE room_id = $1 AND user_id = $2",
                                    room, member)
    assert banned_at is not None

    for attempt in (history.post_message(room, author, "late", member=True),
                    history.post_message(room, author, "late reply", reply_to=first.message_id, member=True),
                    history.react(room, member, str(first.message_id), "x", True, member=True),
                    history.moderate(room, member, str(first.message_id), deleted=True, member=True)):
        with pytest.raises(errors.Forbidden) as late:
            await attempt
        assert late.value.code == "not_member"
    assert (await history.post_message(room, Author(owner), "owner", member=True)).fresh

    await rooms.close(room, owner)
    for attempt in (history.post_message(room, Author(owner), "closed", member=True),
                    history.react(room, owner, str(first.message_id), "x", True, member=True)):
        with pytest.raises(errors.Forbidden) as closed:
            await attempt
        assert closed.value.code == "room_closed"
    seq = await history.current_seq(str(room))
    events = await history.fetch_range(str(room), 0, seq)
    assert [s for s, _ in events] == list(range(1, seq + 1)), "refusals left no seq gap"

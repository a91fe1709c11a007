"""Focus timers on the real parts: two app nodes sharing PostgreSQL and Redis (REST control,
`focus_state` frames, `welcome.focus` for a late joiner), and the service's boundary tick with an
injected clock (two services standing in for two nodes) crediting minutes once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from roomserver.config import Settings
from roomserver.focus import FocusControl, FocusService
from roomserver.protocol import FocusState
from roomserver.rooms import RoomService
from roomserver.store.db import create_pool
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.servers import run_app
from tests.world import add_room, add_user
from tests.ws_client import RoomClient, create_room

START = {"action": "start", "work_seconds": 60, "break_seconds": 120, "cycles": 2}


def node_settings(database_url: str, redis_url: str, data: Path) -> Settings:
    port = free_port()
    return Settings.from_env({}, database_url=database_url, redis_url=redis_url, data_dir=data,
                             port=port, public_origin=f"http://127.0.0.1:{port}",
                             rate_limit_per_minute=100_000, ws_sockets_per_ip=100_000)


@pytest.fixture(scope="module")
async def nodes(database_url: str, redis_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[str]]:
    one = node_settings(database_url, redis_url, tmp_path_factory.mktemp("focus-a"))
    two = node_settings(database_url, redis_url, tmp_path_factory.mktemp("focus-b"))
    async with run_app(one) as a, run_app(two) as b:
        yield [a, b]


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


def when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def focus_of(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: frame[k] for k in ("phase", "started_at", "ends_at", "paused_remaining", "cycle", "cycles")}


async def test_two_nodes_and_a_late_joiner_agree(nodes: list[str]) -> None:
    a, b = nodes
    async with httpx.AsyncClient(base_url=a, timeout=30) as http_a, \
            httpx.AsyncClient(base_url=b, timeout=30) as http_b:
        owner, member, late = await sign_in(http_a), await sign_in(http_a), await sign_in(http_a)
        room = await create_room(http_a, owner)
        for user in (member, late):
            assert (await http_a.post(f"/api/v1/rooms/{room}/join", headers=user.headers)).status_code == 200
        on_b = await RoomClient.open(b, member, room)
        try:
            never = on_b.frames[0]["focus"]
            assert never["phase"] == "idle" and never["cycle"] == 0 and never["ends_at"] is None

            started = await http_a.post(f"/api/v1/rooms/{room}/focus", headers=owner.headers, json=START)
            assert started.status_code == 200, started.text
            state = started.json()
            assert state["phase"] == "work" and state["cycle"] == 1 and state["cycles"] == 2
            assert (when(state["ends_at"]) - when(state["started_at"])).total_seconds() == 60
            seen = await on_b.wait_for(lambda f: f["type"] == "focus_state")
            assert focus_of(seen) == focus_of(state)

            joiner = await RoomClient.open(b, late, room)
            assert focus_of(joiner.frames[0]["focus"]) == focus_of(state)
            await joiner.close()
            assert focus_of((await http_b.get(f"/api/v1/rooms/{room}/focus",
                                              headers=late.headers)).json()) == focus_of(state)

            paused = (await http_a.post(f"/api/v1/rooms/{room}/focus", headers=owner.headers,
                                        json={"action": "pause"})).json()
            assert paused["phase"] == "paused" and paused["ends_at"] is None
            assert 0 < paused["paused_remaining"] <= 60
            assert focus_of(await on_b.wait_for(lambda f: f["type"] == "focus_state")) == focus_of(paused)
            await asyncio.sleep(0.3)  # paused: time stands still on every node
            assert (await http_b.get(f"/api/v1/rooms/{room}/focus",
                                     headers=member.headers)).json()["paused_remaining"] == paused["paused_remaining"]
            again = await http_a.post(f"/api/v1/rooms/{room}/focus", headers=owner.headers,
                                      json={"action": "pause"})
            assert again.status_code == 409 and again.json()["error"]["code"] == "focus_not_running"

            resumed = (await http_b.post(f"/api/v1/rooms/{room}/focus", headers=owner.headers,
                                         json={"action": "resume"})).json()
            assert resumed["phase"] == "work" and resumed["paused_remaining"] is None
            assert when(resumed["started_at"]) > when(state["started_at"])  # shifted by the pause
            assert (when(resumed["ends_at"]) - when(resumed["started_at"])).total_seconds() == 60
            assert focus_of(await on_b.wait_for(lambda f: f["type"] == "focus_state")) == focus_of(resumed)

            phases = []
            for _ in range(3):
                skipped = await http_a.post(f"/api/v1/rooms/{room}/focus", headers=owner.headers,
                                            json={"action": "skip"})
                phases.append((skipped.json()["phase"], skipped.json()["cycle"]))
                assert focus_of(await on_b.wait_for(lambda f: f["type"] == "focus_state")) == focus_of(skipped.json())
            assert phases == [("break", 1), ("work", 2), ("idle", 2)]
            b_break = (await http_b.get(f"/api/v1/rooms/{room}/focus/history", headers=member.headers)).json()
            assert [s["end_reason"] for s in b_break["sessions"]] == ["finished"]
        finally:
            await on_b.close()


async def test_the_nodes_tick_announces_a_boundary_once_and_credits_who_is_present(
        nodes: list[str], pool: asyncpg.Pool) -> None:
    """The real loop, presence and database clock: the session's anchor is moved 61 s into the
    past (time travel in the one stored row), and within a few ticks one of the two nodes
    announces the break, once, crediting the member connected on node B and not the absent owner."""
    a, b = nodes
    async with httpx.AsyncClient(base_url=a, timeout=30) as http:
        owner, member = await sign_in(http), await sign_in(http)
        room = await create_room(http, owner)
        assert (await http.post(f"/api/v1/rooms/{room}/join", headers=member.headers)).status_code == 200
        on_b = await RoomClient.open(b, member, room)
        try:
            started = await http.post(f"/api/v1/rooms/{room}/focus", headers=owner.headers, json=START)
            await on_b.wait_for(lambda f: f["type"] == "focus_state" and f["phase"] == "work")
            await pool.execute("""UPDATE focus_sessions SET anchor = anchor - interval '61 seconds',
                                  started_at = started_at - interval '61 seconds' WHERE id = $1""",
                               uuid.UUID(started.json()["session_id"]))
            boundary = await on_b.wait_for(lambda f: f["type"] == "focus_state", timeout=15)
            assert boundary["phase"] == "break" and boundary["cycle"] == 1
            await asyncio.sleep(2.5)  # two more ticks on each node: nothing more to announce
            assert [f["phase"] for f in on_b.frames if f["type"] == "focus_state"] == ["work", "break"]
            credited = await pool.fetch("SELECT user_id, minutes FROM focus_minutes WHERE room_id = $1",
                                        uuid.UUID(room))
            assert [(str(r["user_id"]), float(r["minutes"])) for r in credited] == [(member.user_id, 1.0)]
            stats = (await http.get("/api/v1/users/focus", headers=member.headers)).json()
            assert stats["total_minutes"] >= 1.0 and room in [r["room_id"] for r in stats["rooms"]]
        finally:
            await on_b.close()
            # leave no running timer for the hand-clocked tests' `tick`, which sees every room
            await http.post(f"/api/v1/rooms/{room}/focus", headers=owner.headers, json={"action": "stop"})


async def test_who_may_control_and_typed_errors(nodes: list[str]) -> None:
    async with httpx.AsyncClient(base_url=nodes[0], timeout=30) as http:
        owner, member, stranger = await sign_in(http), await sign_in(http), await sign_in(http)
        room = await create_room(http, owner)
        assert (await http.post(f"/api/v1/rooms/{room}/join", headers=member.headers)).status_code == 200
        url = f"/api/v1/rooms/{room}/focus"

        refused = await http.post(url, headers=member.headers, json=START)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_moderator"
        outsider = await http.post(url, headers=stranger.headers, json=START)
        assert outsider.status_code == 403 and outsider.json()["error"]["code"] == "not_member"
        for bad in ({**START, "work_seconds": 59}, {**START, "work_seconds": 7201},
                    {**START, "cycles": 0}, {"action": "start"}, {"action": "pause", "cycles": 2},
                    {"action": "dance"}):
            answer = await http.post(url, headers=owner.headers, json=bad)
            assert answer.status_code == 400 and answer.json()["error"]["code"] == "validation_error", bad
        for action in ("pause", "resume", "skip", "stop"):
            idle = await http.post(url, headers=owner.headers, json={"action": action})
            assert idle.status_code == 409 and idle.json()["error"]["code"] == "focus_not_running"

        opened = await http.patch(f"/api/v1/rooms/{room}", headers=owner.headers, json={"focus_open": True})
        assert opened.status_code == 200 and opened.json()["focus_open"] is True
        assert (await http.post(url, headers=member.headers, json=START)).status_code == 200
        twice = await http.post(url, headers=member.headers, json=START)
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "focus_running"
        not_paused = await http.post(url, headers=member.headers, json={"action": "resume"})
        assert not_paused.status_code == 409 and not_paused.json()["error"]["code"] == "focus_not_paused"
        stopped = await http.post(url, headers=member.headers, json={"action": "stop"})
        assert stopped.json()["phase"] == "idle" and stopped.json()["cycle"] == 1
        assert (await http.get(f"/api/v1/rooms/{uuid.uuid4()}/focus", headers=owner.headers)).status_code == 404
        assert (await http.get("/api/v1/users/focus?days=0", headers=owner.headers)).status_code == 400


class Clock:
    """A clock the test moves by hand. It starts at 09:00 UTC a month ahead of real time: the app
    nodes of this module tick with the database's clock, to which these timers have not started
    yet (and the day's minutes stay on one UTC day)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=30)

    async def __call__(self) -> datetime:
        return self.now


async def test_boundaries_are_announced_once_and_minutes_credited_once(pool: asyncpg.Pool) -> None:
    owner, _ = await add_user(pool)
    present, _ = await add_user(pool)
    absent, _ = await add_user(pool)
    room = await add_room(pool, owner, present, absent)
    clock = Clock()
    frames: list[FocusState] = []

    async def emit(room_id: uuid.UUID, state: FocusState) -> None:
        frames.append(state)

    async def here(room_id: uuid.UUID) -> set[uuid.UUID]:
        return {owner, present}

    rooms = RoomService(pool)
    node_a, node_b = (FocusService(pool, rooms, emit=emit, present=here, clock_=clock) for _ in range(2))
    await node_a.control(room, owner, FocusControl(action="start", work_seconds=60, break_seconds=120, cycles=2))
    frames.clear()
    assert await node_a.tick() + await node_b.tick() == 0  # nothing passed yet

    clock.now += timedelta(seconds=61)  # work 1 -> break 1
    counts = await asyncio.gather(node_a.tick(), node_b.tick(), node_a.tick())
    assert sum(counts) == 1 and [f.phase for f in frames] == ["break"]
    assert frames[0].ends_at == (clock.now + timedelta(seconds=119)).isoformat()
    minutes = await pool.fetch("SELECT user_id, cycle, minutes FROM focus_minutes WHERE room_id = $1", room)
    assert sorted((r["user_id"], r["cycle"], float(r["minutes"])) for r in minutes) == sorted(
        [(owner, 1, 1.0), (present, 1, 1.0)])

    clock.now += timedelta(seconds=10_000)  # past break 1 and work 2: one announcement, idle
    assert await node_b.tick() + await node_a.tick() == 1
    assert frames[-1].phase == "idle" and frames[-1].cycle == 2
    assert await pool.fetchval("SELECT count(*) FROM focus_minutes WHERE user_id = $1", present) == 2
    assert await pool.fetchval("SELECT count(*) FROM focus_minutes WHERE user_id = $1", absent) == 0
    assert (await node_a.snapshot(room)).phase == "idle"

    history = await node_a.history(room, present, 10)
    assert [(s.completed_cycles, s.minutes, s.end_reason) for s in history.sessions] == [(2, 4.0, "finished")]
    stats = await node_a.stats(present, 366)
    assert stats.total_minutes == 2.0 and stats.sessions == 1
    assert [(r.room_id, r.minutes) for r in stats.rooms] == [(room, 2.0)]
    assert [d.minutes for d in stats.days] == [2.0]


async def test_a_skipped_work_phase_earns_nothing_and_a_pause_delays_the_boundary(pool: asyncpg.Pool) -> None:
    owner, _ = await add_user(pool)
    room = await add_room(pool, owner)
    clock = Clock()

    async def here(room_id: uuid.UUID) -> set[uuid.UUID]:
        return {owner}

    focus = FocusService(pool, RoomService(pool), present=here, clock_=clock)
    started = await focus.control(room, owner, FocusControl(action="start", work_seconds=60,
                                                            break_seconds=60, cycles=2))
    clock.now += timedelta(seconds=30)
    await focus.control(room, owner, FocusControl(action="pause"))
    clock.now += timedelta(seconds=600)  # paused: no boundary passes
    assert await focus.tick() == 0
    resumed = await focus.control(room, owner, FocusControl(action="resume"))
    assert resumed.ends_at == (clock.now + timedelta(seconds=30)).isoformat()
    assert resumed.started_at == (datetime.fromisoformat(started.started_at) + timedelta(seconds=600)).isoformat()
    clock.now += timedelta(seconds=31)
    assert await focus.tick() == 1  # work 1 completed by time: credited
    await focus.control(room, owner, FocusControl(action="skip"))  # break 1 -> work 2
    await focus.control(room, owner, FocusControl(action="skip"))  # work 2 skipped -> idle
    rows = await pool.fetch("SELECT cycle FROM focus_minutes WHERE room_id = $1", room)
    assert [r["cycle"] for r in rows] == [1]

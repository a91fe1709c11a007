"""Focus timers: control, the room's current state, boundary announcements, minutes, statistics.

Contracts:
- State is the row in `focus_sessions` (at most one running per room); the phase is computed
  by `roomserver.focus.clock` from the row and an instant of the ONE clock (`clock`, by default
  the database's `clock_timestamp()`), so every node and late joiner computes the same phase.
- Control (`control`): the room's owner and moderators, or any member when the room's
  `focus_open` is set (403 `not_moderator`; 403 `not_member`, `room_closed`). Under the row's
  lock, boundaries that passed by time are settled first (credited), then the action applies;
  409 `focus_running` (start while running), `focus_not_running` (pause/skip/stop without a
  running timer, pause while paused), `focus_not_paused` (resume while running).
- Boundaries (`tick`, run by every node every second or so): a node claims the segments that
  passed with a conditional UPDATE of `announced` (on the unchanged anchor), so exactly one node
  credits them and emits `focus_state` once per boundary.
- Minutes: a work phase that ran to its end credits `work_seconds / 60` minutes to each member
  present (`present`: the shared presence store) at the moment it is settled; the key
  (session, cycle, user) makes a retry or a second node's attempt a no-op.
- `emit` is called after the commit with the new state (the realtime node's ephemeral path).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from roomserver import errors
from roomserver.focus import clock
from roomserver.focus.models import (
    DayMinutes,
    FocusControl,
    FocusHistory,
    FocusSession,
    FocusStats,
    RoomMinutes,
)
from roomserver.protocol import FocusState
from roomserver.rooms import RoomService
from roomserver.rooms.moderation import is_moderator

log = logging.getLogger(__name__)

Emit = Callable[[uuid.UUID, FocusState], Awaitable[None]]
"""`emit(room_id, state)`: send `focus_state` to the room's members on every node."""
Present = Callable[[uuid.UUID], Awaitable[set[uuid.UUID]]]
"""`present(room_id)`: the users present in the room on any node."""
Clock = Callable[[], Awaitable[datetime]]


async def _nobody(room_id: uuid.UUID) -> set[uuid.UUID]:
    return set()


async def _nowhere(room_id: uuid.UUID, state: FocusState) -> None:
    return None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _timer(row: asyncpg.Record) -> clock.Timer:
    plan = clock.Plan(row["work_seconds"], row["break_seconds"], row["cycles"])
    return clock.Timer(plan, row["anchor"], row["paused_at"])


def state_of(room_id: uuid.UUID, room_created: datetime, row: asyncpg.Record | None,
             at: datetime) -> FocusState:
    """The wire state of the room's latest session `row` (None: never had one) at `at`."""
    base: dict[str, Any] = {"room_id": str(room_id)}
    if row is None:
        return FocusState(phase="idle", started_at=_iso(room_created), ends_at=None,
                          paused_remaining=None, cycle=0, cycles=0, **base)
    base["session_id"] = str(row["id"])
    if row["ended_at"] is not None:
        cycle = min(row["announced"] // 2 + 1, row["cycles"])
        return FocusState(phase="idle", started_at=_iso(row["ended_at"]), ends_at=None,
                          paused_remaining=None, cycle=cycle, cycles=row["cycles"], **base)
    v = clock.view(_timer(row), at)
    return FocusState(phase=v.phase, started_at=_iso(v.started_at),
                      ends_at=None if v.ends_at is None else _iso(v.ends_at),
                      paused_remaining=v.paused_remaining, cycle=v.cycle, cycles=v.cycles, **base)


_LATEST = """SELECT r.created_at AS room_created, s.* FROM study_rooms r
    LEFT JOIN LATERAL (SELECT * FROM focus_sessions f WHERE f.room_id = r.id
                       ORDER BY f.ended_at IS NULL DESC, f.started_at DESC LIMIT 1) s ON true
    WHERE r.id = $1"""


class FocusService:
    """Focus timers over one pool; see the module docstring for the contracts."""

    def __init__(self, pool: asyncpg.Pool, rooms: RoomService, *, emit: Emit = _nowhere,
                 present: Present = _nobody, clock_: Clock | None = None) -> None:
        self._pool, self._rooms = pool, rooms
        self._emit, self._present = emit, present
        self._clock = clock_ or self._db_clock

    async def _db_clock(self) -> datetime:
        now: datetime = await self._pool.fetchval("SELECT clock_timestamp()")
        return now

    # -- state ------------------------------------------------------------------------------

    async def snapshot(self, room_id: uuid.UUID) -> FocusState:
        """The room's state now, for someone already admitted (the `welcome`)."""
        row = await self._pool.fetchrow(_LATEST, room_id)
        if row is None:
            raise errors.NotFound("no such room", code="room_not_found")
        return state_of(room_id, row["room_created"], row if row["id"] is not None else None,
                        await self._clock())

    async def state(self, room_id: uuid.UUID, viewer_id: uuid.UUID) -> FocusState:
        """The state as `viewer_id` may see it (404 `room_not_found` for a hidden room)."""
        await self._rooms.get(room_id, viewer_id)
        return await self.snapshot(room_id)

    # -- control ----------------------------------------------------------------------------

    async def control(self, room_id: uuid.UUID, actor_id: uuid.UUID, body: FocusControl) -> FocusState:
        """Apply `body.action` (see the module docstring for who may and the 409s)."""
        room = await self._rooms.get(room_id, actor_id)
        if not room.is_active:
            raise errors.Forbidden("the room is closed", code="room_closed")
        if room.my_role is None:
            raise errors.Forbidden("only the room's members can do this", code="not_member")
        if not (room.focus_open or is_moderator(room.my_role)):
            raise errors.Forbidden("only the room's owner or a moderator controls its focus timer",
                                   code="not_moderator")
        present = await self._present(room_id)
        async with self._pool.acquire() as conn, conn.transaction():
            now = await self._clock()
            row = await conn.fetchrow(
                "SELECT * FROM focus_sessions WHERE room_id = $1 AND ended_at IS NULL FOR UPDATE",
                room_id)
            if row is not None:
                row = await self._settle(conn, row, now, present)
            await self._apply(conn, room_id, actor_id, body, row, now)
            latest = await conn.fetchrow(_LATEST, room_id)
        state = state_of(room_id, latest["room_created"], latest, now)
        await self._emit(room_id, state)
        return state

    async def _apply(self, conn: asyncpg.Connection, room_id: uuid.UUID, actor_id: uuid.UUID,
                     body: FocusControl, row: asyncpg.Record | None, now: datetime) -> None:
        if body.action == "start":
            if row is not None:
                raise errors.Conflict("a focus timer is already running", code="focus_running")
            await conn.execute(
                """INSERT INTO focus_sessions (room_id, started_by, work_seconds, break_seconds,
                       cycles, started_at, anchor) VALUES ($1, $2, $3, $4, $5, $6, $6)""",
                room_id, actor_id, body.work_seconds, body.break_seconds, body.cycles, now)
            return
        if row is None or (body.action == "pause" and row["paused_at"] is not None):
            raise errors.Conflict("no focus timer is running", code="focus_not_running")
        timer = _timer(row)
        if body.action == "stop":
            await self._end(conn, row["id"], now, "stopped", clock.view(timer, now).segment)
        elif body.action == "pause":
            await self._move(conn, row["id"], clock.pause(timer, now), now)
        elif body.action == "resume":
            if row["paused_at"] is None:
                raise errors.Conflict("the focus timer is not paused", code="focus_not_paused")
            await self._move(conn, row["id"], clock.resume(timer, now), now)
        else:
            await self._move(conn, row["id"], clock.skip(timer, now), now)

    async def _move(self, conn: asyncpg.Connection, session_id: uuid.UUID, timer: clock.Timer,
                    now: datetime) -> None:
        """Store a changed timer; one moved onto the idle segment has finished."""
        k = clock.view(timer, now).segment
        if k == clock.segment_count(timer.plan):
            await self._end(conn, session_id, now, "finished", k)
            return
        await conn.execute(
            "UPDATE focus_sessions SET anchor = $2, paused_at = $3, announced = $4 WHERE id = $1",
            session_id, timer.anchor, timer.paused_at, k)

    @staticmethod
    async def _end(conn: asyncpg.Connection, session_id: uuid.UUID, at: datetime, reason: str,
                   segment: int) -> None:
        await conn.execute(
            """UPDATE focus_sessions SET ended_at = $2, end_reason = $3, announced = $4
               WHERE id = $1""", session_id, at, reason, segment)

    async def _settle(self, conn: asyncpg.Connection, row: asyncpg.Record, now: datetime,
                      present: set[uuid.UUID]) -> asyncpg.Record | None:
        """Credit the boundaries that passed by time since `announced` (row locked); None when
        the timer has finished meanwhile (it is then ended), else the row as it now is."""
        timer = _timer(row)
        k = clock.view(timer, now).segment
        if k <= row["announced"]:
            return row
        await self._credit(conn, row, clock.completed_work(timer.plan, row["announced"], k), present, now)
        if k == clock.segment_count(timer.plan):
            finished = timer.anchor + timedelta(seconds=clock.segment_start(timer.plan, k))
            await self._end(conn, row["id"], finished, "finished", k)
            return None
        return await conn.fetchrow(  # type: ignore[no-any-return]
            "UPDATE focus_sessions SET announced = $2 WHERE id = $1 RETURNING *", row["id"], k)

    @staticmethod
    async def _credit(conn: asyncpg.Connection, row: asyncpg.Record, cycles: list[int],
                      present: set[uuid.UUID], at: datetime) -> None:
        """Minutes for each completed work cycle to each present member (idempotent)."""
        if not cycles or not present:
            return
        await conn.execute(
            """INSERT INTO focus_minutes (session_id, cycle, user_id, room_id, minutes, completed_at)
               SELECT $1, c, p.user_id, p.room_id, $3::numeric / 60, $5
                 FROM room_participants p, unnest($4::int[]) AS c
                WHERE p.room_id = $2 AND p.is_member AND p.user_id = ANY($6::uuid[])
               ON CONFLICT DO NOTHING""",
            row["id"], row["room_id"], row["work_seconds"], cycles, at, list(present))

    # -- boundaries -------------------------------------------------------------------------

    async def tick(self) -> int:
        """Announce every running timer's passed boundaries (claimed once across nodes);
        returns how many timers this call announced."""
        now = await self._clock()
        rows = await self._pool.fetch(
            "SELECT * FROM focus_sessions WHERE ended_at IS NULL AND paused_at IS NULL")
        announced = 0
        for row in rows:
            if clock.view(_timer(row), now).segment > row["announced"]:
                announced += await self._announce(row, now)
        return announced

    async def _announce(self, row: asyncpg.Record, now: datetime) -> int:
        room_id = row["room_id"]
        present = await self._present(room_id)
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchrow(
                """SELECT * FROM focus_sessions WHERE id = $1 AND announced = $2 AND anchor = $3
                     AND paused_at IS NULL AND ended_at IS NULL FOR UPDATE SKIP LOCKED""",
                row["id"], row["announced"], row["anchor"])
            if claimed is None:
                return 0  # another node (or a control) got there first
            await self._settle(conn, claimed, now, present)
            latest = await conn.fetchrow(_LATEST, room_id)
        await self._emit(room_id, state_of(room_id, latest["room_created"], latest, now))
        return 1

    # -- history and statistics -------------------------------------------------------------

    async def history(self, room_id: uuid.UUID, viewer_id: uuid.UUID, limit: int) -> FocusHistory:
        """The room's sessions, newest first (404 for a hidden room)."""
        await self._rooms.get(room_id, viewer_id)
        rows = await self._pool.fetch(
            """SELECT s.id, s.room_id, s.started_by, s.work_seconds, s.break_seconds, s.cycles,
                      s.started_at, s.ended_at, s.end_reason,
                      (SELECT count(DISTINCT m.cycle) FROM focus_minutes m WHERE m.session_id = s.id)
                          AS completed_cycles,
                      (SELECT coalesce(sum(m.minutes), 0) FROM focus_minutes m
                        WHERE m.session_id = s.id)::float8 AS minutes
                 FROM focus_sessions s WHERE s.room_id = $1
                ORDER BY s.started_at DESC, s.id DESC LIMIT $2""", room_id, limit)
        return FocusHistory(sessions=[FocusSession(**dict(r)) for r in rows])

    async def stats(self, user_id: uuid.UUID, days: int) -> FocusStats:
        """The user's credited minutes over the last `days` UTC days: per day and per room."""
        today = (await self._clock()).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        since = today - timedelta(days=days - 1)
        per_day = await self._pool.fetch(
            """SELECT (completed_at AT TIME ZONE 'UTC')::date AS day, sum(minutes)::float8 AS minutes
                 FROM focus_minutes WHERE user_id = $1 AND completed_at >= $2
                GROUP BY 1 ORDER BY 1""", user_id, since)
        per_room = await self._pool.fetch(
            """SELECT m.room_id, r.name, sum(m.minutes)::float8 AS minutes
                 FROM focus_minutes m JOIN study_rooms r ON r.id = m.room_id
                WHERE m.user_id = $1 AND m.completed_at >= $2
                GROUP BY m.room_id, r.name ORDER BY minutes DESC, m.room_id""", user_id, since)
        sessions = await self._pool.fetchval(
            """SELECT count(DISTINCT session_id) FROM focus_minutes
                WHERE user_id = $1 AND completed_at >= $2""", user_id, since)
        return FocusStats(total_minutes=sum(r["minutes"] for r in per_day), sessions=sessions,
                          days=[DayMinutes(**dict(r)) for r in per_day],
                          rooms=[RoomMinutes(**dict(r)) for r in per_room])

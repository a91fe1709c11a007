"""The tutor's SQL (json/jsonb go through the pool's codec as Python objects): threads, turns, per-room options and daily usage. One function per query."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from roomserver import errors


class Thread(BaseModel):
    id: uuid.UUID
    room_id: uuid.UUID
    started_by: uuid.UUID
    title: str
    turn_count: int
    created_at: datetime
    updated_at: datetime


class Turn(BaseModel):
    id: uuid.UUID
    thread_id: uuid.UUID
    user_id: uuid.UUID
    question: str
    answer: str | None
    mode: str
    status: str
    sources: list[dict[str, Any]]
    message_id: uuid.UUID | None
    message_seq: int | None
    input_tokens: int
    output_tokens: int
    created_at: datetime
    finished_at: datetime | None


def _turn(row: asyncpg.Record) -> Turn:
    return Turn(**dict(row))


_TURN_COLUMNS = """id, thread_id, user_id, question, answer, mode, status, sources,
    message_id, message_seq, input_tokens, output_tokens, created_at, finished_at"""


async def include_public(pool: asyncpg.Pool, room_id: uuid.UUID) -> bool:
    value = await pool.fetchval(
        "SELECT include_public FROM tutor_room_settings WHERE room_id = $1", room_id)
    return bool(value)


async def set_include_public(pool: asyncpg.Pool, room_id: uuid.UUID, value: bool) -> None:
    await pool.execute(
        """INSERT INTO tutor_room_settings (room_id, include_public) VALUES ($1, $2)
           ON CONFLICT (room_id) DO UPDATE SET include_public = $2, updated_at = now()""",
        room_id, value)


async def open_thread(pool: asyncpg.Pool, room_id: uuid.UUID, user_id: uuid.UUID,
                      thread_id: uuid.UUID | None, title: str) -> Thread:
    """The room's thread `thread_id`, or a new one titled after the first question."""
    if thread_id is not None:
        row = await pool.fetchrow(
            "SELECT * FROM tutor_threads WHERE id = $1 AND room_id = $2", thread_id, room_id)
        if row is None:
            raise errors.NotFound("no such tutor thread in this room", code="thread_not_found")
        return Thread(**dict(row))
    row = await pool.fetchrow(
        "INSERT INTO tutor_threads (room_id, started_by, title) VALUES ($1, $2, $3) RETURNING *",
        room_id, user_id, title[:200] or "question")
    return Thread(**dict(row))


async def recent_turns(pool: asyncpg.Pool, thread_id: uuid.UUID, limit: int = 50) -> list[Turn]:
    """The thread's answered turns, oldest first (at most the last `limit`)."""
    rows = await pool.fetch(
        f"""SELECT * FROM (SELECT {_TURN_COLUMNS} FROM tutor_turns
                WHERE thread_id = $1 AND status = 'done'
                ORDER BY created_at DESC, id DESC LIMIT $2) t
            ORDER BY created_at, id""",
        thread_id, limit)
    return [_turn(r) for r in rows]


async def last_state(pool: asyncpg.Pool, thread_id: uuid.UUID) -> dict[str, Any]:
    """The offline flow's state left by the thread's last finished turn."""
    state = await pool.fetchval(
        """SELECT state FROM tutor_turns WHERE thread_id = $1 AND status = 'done'
           ORDER BY created_at DESC, id DESC LIMIT 1""", thread_id)
    return dict(state) if state else {}


async def start_turn(pool: asyncpg.Pool, thread: Thread, user_id: uuid.UUID, question: str,
                     mode: str) -> uuid.UUID:
    async with pool.acquire() as conn, conn.transaction():
        turn_id: uuid.UUID = await conn.fetchval(
            """INSERT INTO tutor_turns (thread_id, room_id, user_id, question, mode)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            thread.id, thread.room_id, user_id, question, mode)
        await conn.execute(
            "UPDATE tutor_threads SET turn_count = turn_count + 1, updated_at = now() WHERE id = $1",
            thread.id)
        await conn.execute(
            """INSERT INTO tutor_usage (day, room_id, user_id, questions) VALUES (current_date, $1, $2, 1)
               ON CONFLICT (day, room_id, user_id) DO UPDATE SET questions = tutor_usage.questions + 1""",
            thread.room_id, user_id)
    return turn_id


async def finish_turn(pool: asyncpg.Pool, turn_id: uuid.UUID, *, status: str, answer: str | None,
                      sources: list[dict[str, Any]], state: dict[str, Any],
                      input_tokens: int, output_tokens: int,
                      message_id: uuid.UUID | None = None, message_seq: int | None = None) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE tutor_turns SET status = $2, answer = $3, sources = $4::jsonb, state = $5::jsonb,
                   input_tokens = $6, output_tokens = $7, message_id = $8, message_seq = $9,
                   finished_at = now()
               WHERE id = $1 RETURNING room_id, user_id""",
            turn_id, status, answer, sources, state,
            input_tokens, output_tokens, message_id, message_seq)
        if row is not None and (input_tokens or output_tokens):
            await conn.execute(
                """UPDATE tutor_usage SET input_tokens = input_tokens + $3,
                       output_tokens = output_tokens + $4
                   WHERE day = current_date AND room_id = $1 AND user_id = $2""",
                row["room_id"], row["user_id"], input_tokens, output_tokens)


async def tokens_today(pool: asyncpg.Pool, room_id: uuid.UUID, user_id: uuid.UUID) -> tuple[int, int, int]:
    """(tokens the room used today, tokens the user used today in any room, tokens the whole
    deployment used today), in + out, UTC day."""
    row = await pool.fetchrow(
        """SELECT coalesce(sum(input_tokens + output_tokens) FILTER (WHERE room_id = $1), 0) AS room,
                  coalesce(sum(input_tokens + output_tokens) FILTER (WHERE user_id = $2), 0) AS user,
                  coalesce(sum(input_tokens + output_tokens), 0) AS total
           FROM tutor_usage WHERE day = current_date""",
        room_id, user_id)
    return int(row["room"]), int(row["user"]), int(row["total"])


async def usage(pool: asyncpg.Pool, room_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT day, user_id, questions, input_tokens, output_tokens FROM tutor_usage
           WHERE room_id = $1 ORDER BY day DESC, user_id""", room_id)
    return [dict(r) for r in rows]


async def get_thread(pool: asyncpg.Pool, room_id: uuid.UUID, thread_id: uuid.UUID) -> Thread | None:
    row = await pool.fetchrow("SELECT * FROM tutor_threads WHERE id = $1 AND room_id = $2", thread_id, room_id)
    return None if row is None else Thread(**dict(row))


async def list_threads(pool: asyncpg.Pool, room_id: uuid.UUID, limit: int = 50) -> list[Thread]:
    rows = await pool.fetch(
        "SELECT * FROM tutor_threads WHERE room_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2",
        room_id, limit)
    return [Thread(**dict(r)) for r in rows]


async def thread_turns(pool: asyncpg.Pool, room_id: uuid.UUID, thread_id: uuid.UUID) -> list[Turn]:
    rows = await pool.fetch(
        f"""SELECT {_TURN_COLUMNS} FROM tutor_turns WHERE thread_id = $1 AND room_id = $2
            ORDER BY created_at, id""", thread_id, room_id)
    return [_turn(r) for r in rows]

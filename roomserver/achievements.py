"""Achievements: awarded once per user, each adding XP (and so maybe a level), announced live.

What earns one is a table, `FIRSTS`: an event a service reports -> the achievement that doing
it the first time earns. The services report through the `OnEvent` callback they are given at
construction (`Achievements.record`), after the action committed, each action by the service
that commits it: `room_created` by the room service, `document_uploaded` (a new document, not
a duplicate) by the library, `highlight_created` by the history for a room highlight (REST or
socket) and by the highlights service for one made outside a room, `message_posted` by the
history. Codes live in the `achievements` table (seeded by store/schema/0001). Awarding never
fails the action that earned it: a database error is logged and the action goes on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import asyncpg

from roomserver.protocol import Achievement

log = logging.getLogger(__name__)

Event = Literal["room_created", "document_uploaded", "highlight_created", "message_posted"]

FIRSTS: dict[Event, str] = {
    "room_created": "first_room",
    "document_uploaded": "first_upload",
    "highlight_created": "first_highlight",
    "message_posted": "first_message",
}
"""An event -> the achievement its first occurrence earns."""

OnEvent = Callable[[Event, uuid.UUID, uuid.UUID | None], Awaitable[None]]
"""on_event(event, user_id, room_id or None): a service reports what a user did; never raises."""


async def no_event(event: Event, user_id: uuid.UUID, room_id: uuid.UUID | None) -> None:
    return None


Announce = Callable[[uuid.UUID, uuid.UUID | None, Achievement], Awaitable[None]]
"""announce(user_id, room_id or None, achievement): tell the user (and the room they earned it in)."""

KNOWN_LIMIT = 200_000


async def _silent(user_id: uuid.UUID, room_id: uuid.UUID | None, achievement: Achievement) -> None:
    return None


class Achievements:
    def __init__(self, pool: asyncpg.Pool, announce: Announce = _silent):
        self._pool = pool
        self.announce = announce
        # (user, code) pairs known to be awarded: the hot path (every chat message) skips the query
        self._known: set[tuple[uuid.UUID, str]] = set()

    async def record(self, event: Event, user_id: uuid.UUID, room_id: uuid.UUID | None = None) -> None:
        """The `OnEvent` the services are given: award what `FIRSTS` maps `event` to."""
        code = FIRSTS.get(event)
        if code is None:
            return
        try:
            await self.award(user_id, code, room_id)
        except Exception:  # the action that earned it has committed: it must not fail now
            log.exception("achievement %s for %s failed", code, user_id)

    async def award(self, user_id: uuid.UUID, code: str, room_id: uuid.UUID | None = None) -> Achievement | None:
        """Award `code` to the user unless they have it; returns it when newly earned."""
        if (user_id, code) in self._known:
            return None
        try:
            earned = await self._insert(user_id, code, room_id)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("achievement %s for %s not recorded: %s", code, user_id, exc)
            return None
        if len(self._known) >= KNOWN_LIMIT:
            self._known.clear()
        self._known.add((user_id, code))
        if earned is not None:
            try:
                await self.announce(user_id, room_id, earned)
            except Exception:
                log.exception("announcing achievement %s failed", code)
        return earned

    async def _insert(self, user_id: uuid.UUID, code: str, room_id: uuid.UUID | None) -> Achievement | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """WITH new AS (
                       INSERT INTO user_achievements (user_id, achievement_id, room_id)
                       SELECT $1, id, $3 FROM achievements WHERE code = $2
                       ON CONFLICT DO NOTHING RETURNING achievement_id)
                   SELECT a.code, a.name, a.description, a.xp_reward
                   FROM new JOIN achievements a ON a.id = new.achievement_id""",
                user_id, code, room_id)
            if row is None:
                return None
            await conn.execute(
                """UPDATE users SET xp = xp + $2, updated_at = now(),
                       level = (SELECT max(level) FROM user_levels WHERE min_xp <= users.xp + $2)
                   WHERE id = $1""", user_id, row["xp_reward"])
        return Achievement(code=row["code"], name=row["name"], description=row["description"],
                           xp=row["xp_reward"])

    async def of_user(self, user_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT a.code, a.name, a.description, a.xp_reward AS xp, ua.earned_at, ua.room_id
               FROM user_achievements ua JOIN achievements a ON a.id = ua.achievement_id
               WHERE ua.user_id = $1 ORDER BY ua.earned_at""", user_id)
        return [dict(r) for r in rows]

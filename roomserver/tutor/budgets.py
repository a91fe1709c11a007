"""The tutor's budgets: questions per minute (per user, per room), concurrent streams (per
user, per room) and tokens per UTC day (per user across rooms, per room, and for the whole
deployment: accounts and rooms cost nothing to make, so only the deployment-wide ceiling
bounds the spend). A refusal is a typed `RateLimited` with `retry_after`; the deployment
ceiling's code is `tutor_daily_ceiling`. Nothing is spent on a question that is refused for
streams or tokens. Token use is read from `tutor_usage`, so every node sees every node's
spend; stream counts are per process (each node enforces its own cap).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import asyncpg

from roomserver.config import Settings
from roomserver.errors import RateLimited
from roomserver.ratelimit import LimiterFactory, memory_limiters
from roomserver.tutor import store


def _seconds_to_midnight() -> float:
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


class Budgets:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, *,
                 limiters: LimiterFactory = memory_limiters) -> None:
        """Per-minute question limits from `limiters` (shared in Redis by the app); the stream
        caps are this node's (an answer streams from one node)."""
        s = settings
        self.per_user = limiters("tutor-user", s.tutor_user_questions_per_minute / 60,
                                 s.tutor_user_questions_per_minute)
        self.per_room = limiters("tutor-room", s.tutor_room_questions_per_minute / 60,
                                 s.tutor_room_questions_per_minute)
        self.settings, self.pool = settings, pool
        self.user_streams: Counter[uuid.UUID] = Counter()
        self.room_streams: Counter[uuid.UUID] = Counter()

    async def admit(self, room_id: uuid.UUID, user_id: uuid.UUID) -> Slot:
        """Check every budget and take a stream slot; `Slot.release()` (or `with`) gives it back."""
        s = self.settings
        room_tokens, user_tokens, total = await store.tokens_today(self.pool, room_id, user_id)
        if user_tokens >= s.tutor_user_tokens_per_day or room_tokens >= s.tutor_room_tokens_per_day:
            who = "your" if user_tokens >= s.tutor_user_tokens_per_day else "this room's"
            raise RateLimited(f"{who} tutor tokens for today are used up",
                              retry_after=_seconds_to_midnight())
        if total >= s.tutor_total_tokens_per_day:
            raise RateLimited("the tutor's tokens for today are used up on this server",
                              code="tutor_daily_ceiling", retry_after=_seconds_to_midnight(),
                              details={"limit": s.tutor_total_tokens_per_day, "used": total})
        # no await from here on: the checks and the taking of the slot are one step
        if self.user_streams[user_id] >= s.tutor_user_streams:
            raise RateLimited("you already have the most tutor answers streaming at once",
                              retry_after=1.0)
        if self.room_streams[room_id] >= s.tutor_room_streams:
            raise RateLimited("this room has the most tutor answers streaming at once",
                              retry_after=1.0)
        slot = Slot(self, room_id, user_id)  # held across the awaits below, so the caps hold
        try:
            await self.per_user.hit(f"user:{user_id}")
            await self.per_room.hit(f"room:{room_id}")  # `{room:ID}`: the room's slot on a cluster
        except BaseException:
            slot.release()
            raise
        return slot


class Slot:
    """One running answer's share of the stream caps."""

    def __init__(self, budgets: Budgets, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        self._budgets, self._room, self._user = budgets, room_id, user_id
        budgets.user_streams[user_id] += 1
        budgets.room_streams[room_id] += 1
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        for counter, key in ((self._budgets.user_streams, self._user),
                             (self._budgets.room_streams, self._room)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

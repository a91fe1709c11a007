"""Who is in a room, shared across nodes, with TTLs.

Two layers:
- `Presence` (Protocol): the shared store. An entry is (room, user, node) with an expiry;
  a user is present while any node holds an unexpired entry for them, so two tabs (even on
  two nodes) are one member, and a crashed node's users vanish once its entries expire
  (`ttl`, ~60 s; live nodes refresh every `ttl / 3`). `MemoryPresence` serves one node;
  `RedisPresence` keeps per room a sorted set `presence:{room:ID}:conns` of `user\\x1fnode`
  scored by expiry and a hash `presence:{room:ID}:info` of member JSON (`{room:ID}` is a
  hash tag: both keys share one slot, so the MULTI in `add` works on a Redis Cluster). Typing is not stored at
  all: `typing_status` frames are relayed (ephemeral) and nobody asks who is typing.
- `PresenceTracker`: this node's view. It counts connections per (room, user), refreshes
  its entries on `heartbeat()`, and debounces leaves: the last connection closing starts
  a grace timer (`leave_grace`, a few seconds); a reconnect within it emits neither leave nor join.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

SEP = "\x1f"
DEFAULT_TTL = 60.0

Info = dict[str, Any]
"""A member's public info (at least `user_id`), as in protocol.Member."""


class Presence(Protocol):
    async def add(self, room_id: str, user_id: str, node_id: str, info: Info) -> bool:
        """Record the user on this node; True if they were absent from the room before."""
    async def remove(self, room_id: str, user_id: str, node_id: str) -> bool:
        """Drop this node's entry; True if the user is now absent from the room."""
    async def refresh(self, entries: list[tuple[str, str]], node_id: str) -> None:
        """Push the expiry of this node's (room, user) entries `ttl` seconds ahead."""
    async def members(self, room_id: str) -> list[Info]:
        """Present members (unexpired), one per user, ordered by user id."""
    async def nodes(self, room_id: str) -> dict[str, int]:
        """Per node holding unexpired entries in the room: how many users it holds there."""


class MemoryPresence:
    """Single-node store with the same expiry semantics; `clock` is wall time in seconds."""

    def __init__(
        self, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl, self._clock = ttl, clock
        self._conns: dict[str, dict[tuple[str, str], float]] = {}
        self._info: dict[str, dict[str, Info]] = {}

    def _live_users(self, room_id: str) -> set[str]:
        now = self._clock()
        conns = self._conns.get(room_id, {})
        for key in [k for k, exp in conns.items() if exp <= now]:
            del conns[key]
        return {user for user, _ in conns}

    async def add(self, room_id: str, user_id: str, node_id: str, info: Info) -> bool:
        was_absent = user_id not in self._live_users(room_id)
        self._conns.setdefault(room_id, {})[(user_id, node_id)] = self._clock() + self.ttl
        self._info.setdefault(room_id, {})[user_id] = info
        return was_absent

    async def remove(self, room_id: str, user_id: str, node_id: str) -> bool:
        self._conns.get(room_id, {}).pop((user_id, node_id), None)
        gone = user_id not in self._live_users(room_id)
        if gone:
            self._info.get(room_id, {}).pop(user_id, None)
        return gone

    async def refresh(self, entries: list[tuple[str, str]], node_id: str) -> None:
        expiry = self._clock() + self.ttl
        for room_id, user_id in entries:
            self._conns.setdefault(room_id, {})[(user_id, node_id)] = expiry

    async def members(self, room_id: str) -> list[Info]:
        info = self._info.get(room_id, {})
        return [info.get(u, {"user_id": u}) for u in sorted(self._live_users(room_id))]

    async def nodes(self, room_id: str) -> dict[str, int]:
        self._live_users(room_id)  # drops the expired entries
        return _per_node(node for _, node in self._conns.get(room_id, {}))


def _per_node(nodes: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node] = counts.get(node, 0) + 1
    return counts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPresence:
    """Shared store in Redis; see the module docstring for the keys."""

    def __init__(
        self, client: aioredis.Redis, *, ttl: float = DEFAULT_TTL, prefix: str = "presence",
    ) -> None:
        self._r, self.ttl, self._prefix = client, ttl, prefix

    def _keys(self, room_id: str) -> tuple[str, str]:
        base = f"{self._prefix}:{{room:{room_id}}}"  # one hash slot per room on a cluster
        return f"{base}:conns", f"{base}:info"

    async def _users(self, conns_key: str, now: float) -> set[str]:
        raw = await self._r.zrangebyscore(conns_key, f"({now}", "+inf")
        return {_text(entry).split(SEP, 1)[0] for entry in raw}

    async def add(self, room_id: str, user_id: str, node_id: str, info: Info) -> bool:
        conns, infos = self._keys(room_id)
        now = time.time()
        was_absent = user_id not in await self._users(conns, now)
        pipe = self._r.pipeline(transaction=True)
        pipe.zadd(conns, {f"{user_id}{SEP}{node_id}": now + self.ttl})
        pipe.hset(infos, user_id, orjson.dumps(info))
        pipe.expire(conns, int(self.ttl * 2) + 1)
        pipe.expire(infos, int(self.ttl * 2) + 1)
        await pipe.execute()
        return was_absent

    async def remove(self, room_id: str, user_id: str, node_id: str) -> bool:
        conns, infos = self._keys(room_id)
        await self._r.zrem(conns, f"{user_id}{SEP}{node_id}")
        gone = user_id not in await self._users(conns, time.time())
        if gone:
            await self._r.hdel(infos, user_id)
        return gone

    async def refresh(self, entries: list[tuple[str, str]], node_id: str) -> None:
        expiry = time.time() + self.ttl
        pipe = self._r.pipeline(transaction=False)
        for room_id, user_id in entries:
            conns, infos = self._keys(room_id)
            pipe.zadd(conns, {f"{user_id}{SEP}{node_id}": expiry})
            pipe.expire(conns, int(self.ttl * 2) + 1)
            pipe.expire(infos, int(self.ttl * 2) + 1)
        await pipe.execute()

    async def members(self, room_id: str) -> list[Info]:
        conns, infos = self._keys(room_id)
        now = time.time()
        await self._r.zremrangebyscore(conns, "-inf", now)  # lazy cleanup of dead nodes
        users = sorted(await self._users(conns, now))
        if not users:
            return []
        raw = await self._r.hmget(infos, users)
        return [orjson.loads(r) if r else {"user_id": u} for u, r in zip(users, raw, strict=True)]

    async def nodes(self, room_id: str) -> dict[str, int]:
        conns, _ = self._keys(room_id)
        raw = await self._r.zrangebyscore(conns, f"({time.time()}", "+inf")
        return _per_node(_text(entry).split(SEP, 1)[-1] for entry in raw)


LeaveHandler = Callable[[str, str], Awaitable[None]]
"""Awaited with (room_id, user_id) when a user has really left the room."""


class PresenceTracker:
    """This node's connections per (room, user) over a shared `Presence` store."""

    def __init__(
        self, store: Presence, node_id: str, *, leave_grace: float = 3.0,
        on_leave: LeaveHandler | None = None,
    ) -> None:
        self.store, self.node_id, self.leave_grace = store, node_id, leave_grace
        self._on_leave = on_leave
        self._count: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], asyncio.Task[None]] = {}

    def local(self) -> list[tuple[str, str]]:
        """(room, user) pairs this node holds, including those in their leave grace."""
        return [*self._count, *self._pending]

    async def connect(self, room_id: str, info: Info) -> bool:
        """Count one more connection; True if others should see `user_joined`."""
        key = (room_id, str(info["user_id"]))
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.cancel()  # reconnect within the grace: no leave, no join
        self._count[key] = self._count.get(key, 0) + 1
        was_absent = await self.store.add(room_id, key[1], self.node_id, info)
        return was_absent and pending is None

    async def disconnect(self, room_id: str, user_id: str) -> None:
        """Count one connection fewer; the last one starts the leave grace timer."""
        key = (room_id, user_id)
        left = self._count.get(key, 0) - 1
        if left > 0:
            self._count[key] = left
            return
        self._count.pop(key, None)
        if key not in self._pending:
            self._pending[key] = asyncio.create_task(self._leave_later(key))

    async def _leave_later(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(self.leave_grace)
        self._pending.pop(key, None)
        if await self.store.remove(key[0], key[1], self.node_id) and self._on_leave:
            await self._on_leave(*key)

    async def heartbeat(self) -> None:
        """Refresh this node's entries; call every `ttl / 3` seconds."""
        if entries := self.local():
            await self.store.refresh(entries, self.node_id)

    async def close(self) -> None:
        """Leave every room now (graceful shutdown), without waiting for the grace."""
        for task in self._pending.values():
            task.cancel()
        for room_id, user_id in self.local():
            with contextlib.suppress(Exception):
                await self.store.remove(room_id, user_id, self.node_id)
        self._count.clear()
        self._pending.clear()

"""Gated rooms stay correct: every member is re-verified on an interval, connected or not.

Every `interval` seconds (GATE_RECHECK_SECONDS) a `Rechecker` sweeps every open gated room
and asks the gatekeeper, with `use_cache=False` (a fresh read at commitment `confirmed`; the
fresh decision also replaces the cached one, so a removed member who rejoins is refused at
once), about
- every non-owner member whose last verification (`room_participants.gate_verified_at`,
  stamped by joins, REST reads and sweeps on any node) is at least `interval` old: so each
  member is asked about once per interval across all nodes, and members who are not
  connected anywhere are swept too;
- every user with a socket in the room on THIS node who is no longer a member (their
  membership was ended elsewhere, e.g. by a REST read's re-verification), so those sockets close.
A member the gate admits is stamped; a user the gate now refuses is removed:

1. their membership row is marked left (`RoomService.remove_unqualified`, audited);
2. that call ends in the node's one removal operation (reason "no_longer_qualifies"), which
   closes their sockets in the room on every node with `CloseCode.NO_LONGER_QUALIFIES` (4106, do not
   reconnect), and the others see one `user_left {reason: "no_longer_qualifies"}` (a second
   node removing the same user again is harmless: notices are idempotent).

Fail safe for members: if the RPC cannot be reached (`Unavailable`), the pass stops and
nobody is removed; the gatekeeper's `rpc_healthy` (shown by /health) is already false and
`stats.unavailable` counts the abandoned passes. New joins meanwhile fail closed (503
`gating_unavailable`) in the join path, not here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from roomserver.errors import RoomserverError, Unavailable
from roomserver.gating.gatekeeper import Decision, Gate, Gatekeeper
from roomserver.gating.rooms import room_gate
from roomserver.periodic import Periodic
from roomserver.rooms import Room, RoomService
from roomserver.values import uuid_or_none

log = logging.getLogger(__name__)

REASON = "no_longer_qualifies"

LocalUsers = Callable[[str], set[str]]
"""room_id -> the users with a socket in the room on this node (`Realtime.local_users`)."""


@dataclass
class RecheckStats:
    passes: int = 0  # completed passes
    checked: int = 0  # gate checks asked
    removed: int = 0  # memberships this node ended
    unavailable: int = 0  # passes abandoned because the RPC could not be reached
    failures: int = 0  # passes that failed for another reason (logged)


class Rechecker:
    def __init__(self, local_users: LocalUsers, rooms: RoomService, gatekeeper: Gatekeeper, *,
                 interval: float = 60.0, concurrency: int = 8):
        if interval <= 0:
            raise ValueError("the re-check interval must be positive")
        self.local_users, self.rooms, self.gatekeeper = local_users, rooms, gatekeeper
        self.interval = interval
        self.stats = RecheckStats()
        self._limit = asyncio.Semaphore(concurrency)
        self._loop = Periodic("gate re-check pass", interval, self.run_once, on_failure=self._failed)

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()

    def _failed(self) -> None:
        self.stats.failures += 1

    async def run_once(self) -> int:
        """One pass over every open gated room; how many memberships it ended. Stops without
        removing anyone further when the RPC cannot be reached."""
        removed = 0
        try:
            for room in await self.rooms.open_gated_rooms():
                removed += await self.recheck_room(room)
        except Unavailable as exc:
            self.stats.unavailable += 1
            log.warning("gate re-check skipped, nobody removed: %s (%s)", exc.message, exc.details)
            return removed
        self.stats.passes += 1
        return removed

    async def recheck_room(self, room: Room) -> int:
        """Re-verify the room's due members and its stray local sockets' users; raises
        Unavailable (before removing anyone) when any check cannot reach the RPC."""
        gate = room_gate(room)
        if gate is None:
            return 0
        to_check = sorted((await self._subjects(room, self.local_users(str(room.id)))).items())
        answers = await asyncio.gather(*(self._check(wallet, gate) for _, wallet in to_check),
                                       return_exceptions=True)
        for answer in answers:
            if isinstance(answer, Unavailable) or not isinstance(answer, (Decision, RoomserverError)):
                raise answer
        removed, admitted = 0, []
        for (uid, _), answer in zip(to_check, answers, strict=True):
            if isinstance(answer, RoomserverError):  # e.g. a stored gate that is no longer valid
                log.warning("room %s: %s cannot be checked for %s: %s", room.id, gate, uid, answer.message)
            elif isinstance(answer, Decision) and answer.allowed:
                admitted.append(uid)
            elif isinstance(answer, Decision):
                removed += await self._remove(room, uid, answer)
        if admitted:
            await self.rooms.mark_gate_verified(room.id, admitted)
        return removed

    async def _subjects(self, room: Room, local: set[str]) -> dict[uuid.UUID, str]:
        """user -> wallet to ask about: members due for verification, and local sockets' users
        who are no longer members."""
        due = await self.rooms.stale_gate_members(room.id, self.interval)
        connected = {uid for uid in map(uuid_or_none, local) if uid is not None}
        strays = await self.rooms.gate_subjects(room.id, sorted(connected - due.keys())) if connected else {}
        subjects = {uid: wallet for uid, (wallet, _) in due.items()}
        subjects.update({uid: wallet for uid, (wallet, role) in strays.items() if role is None})
        return subjects

    async def _check(self, wallet: str, gate: Gate) -> Decision:
        async with self._limit:
            self.stats.checked += 1
            return await self.gatekeeper.check(wallet, gate, use_cache=False)

    async def _remove(self, room: Room, user_id: uuid.UUID, decision: Decision) -> int:
        code = decision.code or REASON
        ended = await self.rooms.remove_unqualified(room.id, user_id, code, decision.message)
        log.info("room %s: user %s no longer qualifies (%s); removed", room.id, user_id, code)
        if not ended:
            return 0
        self.stats.removed += 1
        return 1

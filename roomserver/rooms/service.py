"""Study rooms: creation, listing, membership and moderation, with all of their SQL.

`RoomService.admit` is the one join policy; the REST join and the realtime layer both call it.
Its order of checks: the room exists and the caller may see it (404 `room_not_found`; a private
room is invisible to anyone without a participant row or an invitation), it is open (403
`room_closed`), the caller is not banned (403 `banned`), an existing member is admitted as is;
otherwise a private room needs an invitation, which admits once (403 `not_invited`), a gated
room needs the injected gate to agree (403 `gating_not_configured` without one), and the room
must have a free seat (403 `room_full`, decided under a row lock so the last seat goes once).

Removal: who may remove whom is `roomserver.rooms.moderation` (the one table). Every way out
of a room (`ban`, `kick`, `leave`, `close`, `remove_unqualified`) commits its change under the
room row's lock (so it serialises with the room's durable writes, which take that lock), then
calls the `removed` hook passed at construction: the realtime node's one removal operation,
which closes the user's sockets in the room on every node with the reason's close code.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import asyncpg

from roomserver import errors
from roomserver.achievements import OnEvent, no_event
from roomserver.identity import users
from roomserver.rooms.models import (
    Ban,
    Invitation,
    Participant,
    Role,
    Room,
    RoomChanges,
    RoomDraft,
    RoomFilter,
    RoomPage,
)
from roomserver.rooms.moderation import check_removal, is_moderator
from roomserver.values import decode_keyset, encode_keyset

log = logging.getLogger(__name__)

Gate = Callable[[str, Room], Awaitable[datetime | None]]
"""`gate(wallet_address, room)` returns to allow a join to a gated room (when the holdings were
read, None: now), raises a typed error to refuse."""

GateValidator = Callable[[str, str, Decimal | None], Awaitable[None]]
"""`gate_validator(room_type, mint_or_collection, min_amount)` raises a typed error for a bad gate."""

Reason = Literal["kicked", "banned", "no_longer_qualifies", "room_closed", "left"]
Removed = Callable[[str, str | None, Reason, str | None], Awaitable[None]]
"""`removed(room_id, user_id or None for everyone, reason, detail)`: after a removal committed,
close the user's sockets in the room on every node (`Realtime.remove`)."""


async def _nobody_connected(room_id: str, user_id: str | None, reason: Reason, detail: str | None) -> None:
    return None

_ROOM_COLUMNS = """r.id, r.name, r.description, r.topic, r.tags, r.room_type, r.owner_id,
    r.access_token_mint, r.access_nft_collection, r.min_token_amount, r.max_participants,
    r.is_active, r.created_at, r.updated_at, r.closed_at, r.focus_open,
    (SELECT count(*) FROM room_participants c WHERE c.room_id = r.id AND c.is_member)
        AS participant_count,
    (SELECT m.role FROM room_participants m
      WHERE m.room_id = r.id AND m.user_id = $1 AND m.is_member) AS my_role"""

# A private room is visible to anyone with a participant row (member, former member, banned)
# or an invitation; everyone else gets 404 so its existence does not leak.
_VISIBLE = """(r.room_type <> 'private'
    OR EXISTS (SELECT 1 FROM room_participants v WHERE v.room_id = r.id AND v.user_id = $1)
    OR EXISTS (SELECT 1 FROM room_invitations i WHERE i.room_id = r.id AND i.user_id = $1))"""

_PARTICIPANT = """SELECT p.room_id, p.user_id, p.role, u.wallet_address, u.username,
    p.joined_at, p.last_active_at
    FROM room_participants p JOIN users u ON u.id = p.user_id"""

GATED_TYPES = ("token_gated", "nft_gated")



def _stale(p: str, interval: str) -> str:
    """SQL: participant row `p` is a gated room's non-owner member whose holdings were
    verified longer ago than the interval parameter `interval` (or never)."""
    return f"""{p}.role <> 'owner'
        AND ({p}.gate_verified_at IS NULL OR {p}.gate_verified_at <= now() - {interval}::interval)
        AND EXISTS (SELECT 1 FROM study_rooms g WHERE g.id = {p}.room_id
                    AND g.room_type IN ('token_gated', 'nft_gated'))"""


def _room(row: asyncpg.Record) -> Room:
    data = dict(row)
    amount = data["min_token_amount"]
    data["min_token_amount"] = None if amount is None else format(amount.normalize(), "f")
    return Room(**data)


def _not_found() -> errors.NotFound:
    return errors.NotFound("no such room", code="room_not_found")


def gating_requirement(room: Room) -> str:
    if room.room_type == "token_gated":
        return f"holding at least {room.min_token_amount} of the token {room.access_token_mint}"
    return f"holding an NFT of the collection {room.access_nft_collection}"


class RoomService:
    """Rooms over one asyncpg pool; `gate` and `gate_validator` plug in token/NFT gating."""

    def __init__(self, pool: asyncpg.Pool, gate: Gate | None = None,
                 gate_validator: GateValidator | None = None, *, gate_recheck_seconds: float = 60,
                 on_event: OnEvent = no_event, removed: Removed = _nobody_connected):
        """`on_event` hears `room_created` (the owner, no room) once a room is created;
        `removed` is told of every removal after it committed (see the module docstring)."""
        self._pool = pool
        self._on_event = on_event
        self._gate = gate
        self._gate_validator = gate_validator
        self._removed = removed
        self.gate_recheck = timedelta(seconds=gate_recheck_seconds)

    # -- rooms ------------------------------------------------------------------------------

    async def validate_new_room(self, draft: RoomDraft) -> None:
        """Ask the injected validator about a gated room's mint or collection; no-op without one."""
        if self._gate_validator is None or draft.room_type not in ("token_gated", "nft_gated"):
            return
        address = draft.access_token_mint or draft.access_nft_collection
        assert address is not None  # RoomDraft guarantees it for gated types
        await self._gate_validator(draft.room_type, address, draft.min_token_amount)

    async def create(self, owner_id: uuid.UUID, draft: RoomDraft) -> Room:
        """A new room with `owner_id` as its `owner` participant."""
        await self.validate_new_room(draft)
        async with self._pool.acquire() as conn, conn.transaction():
            room_id = await conn.fetchval(
                """INSERT INTO study_rooms (name, room_type, description, topic, tags,
                       max_participants, access_token_mint, min_token_amount,
                       access_nft_collection, owner_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
                draft.name, draft.room_type, draft.description, draft.topic, draft.tags,
                draft.max_participants, draft.access_token_mint, draft.min_token_amount,
                draft.access_nft_collection, owner_id)
            await conn.execute(
                "INSERT INTO room_participants (room_id, user_id, role) VALUES ($1, $2, 'owner')",
                room_id, owner_id)
            await users.audit(conn, owner_id, "room.create", "room", room_id,
                              {"room_type": draft.room_type, "name": draft.name})
            room = await self._fetch(conn, room_id, owner_id)
        await self._on_event("room_created", owner_id, None)
        return room

    async def get(self, room_id: uuid.UUID, viewer_id: uuid.UUID) -> Room:
        """The room as `viewer_id` sees it; 404 `room_not_found` if absent or hidden from them."""
        return await self._fetch(self._pool, room_id, viewer_id)

    async def _fetch(self, conn: asyncpg.Connection | asyncpg.Pool, room_id: uuid.UUID,
                     viewer_id: uuid.UUID) -> Room:
        row = await conn.fetchrow(
            f"SELECT {_ROOM_COLUMNS} FROM study_rooms r WHERE r.id = $2 AND {_VISIBLE}",
            viewer_id, room_id)
        if row is None:
            raise _not_found()
        return _room(row)

    async def list_rooms(self, viewer_id: uuid.UUID, filters: RoomFilter) -> RoomPage:
        """Rooms visible to `viewer_id`, newest first, one page at a time."""
        where = [_VISIBLE]
        args: list[Any] = [viewer_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if not filters.include_closed:
            where.append("r.is_active")
        if filters.q:
            escaped = filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(f"r.name ILIKE {arg('%' + escaped + '%')}")
        if filters.room_type:
            where.append(f"r.room_type = {arg(filters.room_type)}")
        if filters.tag:
            where.append(f"{arg(filters.tag.strip().lower())} = ANY (r.tags)")
        if filters.mine:
            where.append("""EXISTS (SELECT 1 FROM room_participants me
                            WHERE me.room_id = r.id AND me.user_id = $1 AND me.is_member)""")
        if filters.cursor:
            created, after_id = decode_keyset(filters.cursor)
            where.append(f"(r.created_at, r.id) < ({arg(created)}, {arg(after_id)})")
        rows = await self._pool.fetch(
            f"""SELECT {_ROOM_COLUMNS} FROM study_rooms r WHERE {" AND ".join(where)}
                ORDER BY r.created_at DESC, r.id DESC LIMIT {arg(filters.limit + 1)}""", *args)
        rooms = [_room(row) for row in rows[: filters.limit]]
        more = len(rows) > filters.limit
        return RoomPage(rooms=rooms,
                        next_cursor=encode_keyset(rooms[-1].created_at, rooms[-1].id) if more else None)

    async def update(self, room_id: uuid.UUID, actor_id: uuid.UUID, changes: RoomChanges) -> Room:
        """Apply an owner's changes; `max_participants` may not drop below the member count."""
        fields = changes.model_dump(exclude_unset=True)
        async with self._pool.acquire() as conn, conn.transaction():
            room = await self._locked_open_room(conn, room_id, actor_id)
            self._require_owner(room, actor_id)
            if fields.get("max_participants", room.max_participants) < room.participant_count:
                raise errors.Conflict(
                    f"the room already has {room.participant_count} members",
                    code="below_member_count",
                    details={"participant_count": room.participant_count})
            if fields:
                sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
                await conn.execute(
                    f"UPDATE study_rooms SET {sets}, updated_at = now() WHERE id = $1",
                    room_id, *fields.values())
                await users.audit(conn, actor_id, "room.update", "room", room_id,
                                  fields)
            return await self._fetch(conn, room_id, actor_id)

    async def close(self, room_id: uuid.UUID, actor_id: uuid.UUID) -> Room:
        """Close the room (owner only); closing a closed room changes nothing."""
        return await self._close(room_id, actor_id, operator_ip=None)

    async def close_by_operator(self, room_id: uuid.UUID, ip: str | None) -> Room:
        """Close any room (the operator; audited `operator.room_close` with no actor and the
        caller's `ip`); the same close and removal as the owner's."""
        return await self._close(room_id, None, operator_ip=ip or "unknown")

    async def _close(self, room_id: uuid.UUID, actor_id: uuid.UUID | None, *,
                     operator_ip: str | None) -> Room:
        async with self._pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval("SELECT owner_id FROM study_rooms WHERE id = $1", room_id)
            viewer = actor_id or owner or uuid.UUID(int=0)  # the operator sees the room as its owner does
            room = await self._locked_room(conn, room_id, viewer)
            if operator_ip is None:
                self._require_owner(room, viewer)
            if room.is_active:
                await conn.execute(
                    """UPDATE study_rooms SET is_active = false, closed_at = now(),
                       updated_at = now() WHERE id = $1""", room_id)
            if operator_ip is not None:
                await users.audit(conn, None, "operator.room_close", "room", room_id,
                                  {"was_open": room.is_active}, operator_ip)
            elif room.is_active:
                await users.audit(conn, actor_id, "room.close", "room", room_id)
            closed = await self._fetch(conn, room_id, viewer)
        await self._removed(str(room_id), None, "room_closed", None)
        return closed

    async def open_rooms(self, *, with_members: bool = False) -> list[tuple[uuid.UUID, str]]:
        """(id, name) of every open room, oldest first; `with_members`: only those with a member."""
        rows = await self._pool.fetch(
            f"""SELECT r.id, r.name FROM study_rooms r WHERE r.is_active
                {"AND EXISTS (SELECT 1 FROM room_participants p WHERE p.room_id = r.id AND p.is_member)"
                 if with_members else ""}
                ORDER BY r.created_at, r.id""")
        return [(row["id"], row["name"]) for row in rows]

    async def _locked_room(self, conn: asyncpg.Connection, room_id: uuid.UUID,
                           viewer_id: uuid.UUID) -> Room:
        """The room as `viewer_id` sees it, with its row locked until the transaction ends."""
        if await conn.fetchval("SELECT 1 FROM study_rooms WHERE id = $1 FOR UPDATE", room_id) is None:
            raise _not_found()
        return await self._fetch(conn, room_id, viewer_id)

    async def _locked_open_room(self, conn: asyncpg.Connection, room_id: uuid.UUID,
                                viewer_id: uuid.UUID) -> Room:
        room = await self._locked_room(conn, room_id, viewer_id)
        if not room.is_active:
            raise errors.Forbidden("the room is closed", code="room_closed")
        return room

    @staticmethod
    def _require_owner(room: Room, actor_id: uuid.UUID) -> None:
        if room.owner_id != actor_id:
            raise errors.Forbidden("only the room's owner can do this", code="not_owner")

    @staticmethod
    def _require_moderator(room: Room) -> None:
        if not is_moderator(room.my_role):
            raise errors.Forbidden("only the room's owner or a moderator can do this",
                                   code="not_moderator")

    # -- membership -------------------------------------------------------------------------

    async def membership(self, room_id: uuid.UUID, user_id: uuid.UUID) -> Participant | None:
        """The user's current membership, or None (never a member, left, or banned)."""
        row = await self._pool.fetchrow(
            f"{_PARTICIPANT} WHERE p.room_id = $1 AND p.user_id = $2 AND p.is_member",
            room_id, user_id)
        return None if row is None else Participant(**dict(row))

    async def admit(self, user_id: uuid.UUID, wallet_address: str, room_id: uuid.UUID) -> Participant:
        """Join `room_id` if allowed, or confirm the existing membership; raises the typed refusal."""
        room = await self.get(room_id, user_id)
        await self._check_may_enter(room, user_id)
        if room.my_role is not None:
            member = await self.membership(room_id, user_id)
            if member is not None:
                if room.room_type in GATED_TYPES and member.role != "owner":
                    await self._reverify(room, member)  # every join; the gate's cache keeps it cheap
                return member
        verified_at = await self._check_may_join(room, user_id, wallet_address)
        async with self._pool.acquire() as conn, conn.transaction():
            room = await self._locked_open_room(conn, room_id, user_id)
            await self._check_may_enter(room, user_id, conn)
            if room.my_role is None:
                if room.participant_count >= room.max_participants:
                    raise errors.Forbidden(
                        f"the room is full ({room.max_participants} participants)",
                        code="room_full", details={"max_participants": room.max_participants})
                await conn.execute(
                    """INSERT INTO room_participants (room_id, user_id, gate_verified_at)
                       VALUES ($1, $2, $3)
                       ON CONFLICT (room_id, user_id) DO UPDATE SET is_member = true,
                         role = 'member', joined_at = now(), last_active_at = now(),
                         left_at = NULL, gate_verified_at = EXCLUDED.gate_verified_at""",
                    room_id, user_id, verified_at)
                await conn.execute(  # an invitation admits once; rejoining needs a new one
                    "DELETE FROM room_invitations WHERE room_id = $1 AND user_id = $2",
                    room_id, user_id)
                await users.audit(conn, user_id, "room.join", "room", room_id)
            row = await conn.fetchrow(f"{_PARTICIPANT} WHERE p.room_id = $1 AND p.user_id = $2",
                                      room_id, user_id)
            return Participant(**dict(row))

    async def _check_may_enter(self, room: Room, user_id: uuid.UUID,
                               conn: asyncpg.Connection | asyncpg.Pool | None = None) -> None:
        if not room.is_active:
            raise errors.Forbidden("the room is closed", code="room_closed")
        if room.my_role is not None:
            return  # a current member is never banned
        banned = await (conn or self._pool).fetchrow(
            """SELECT ban_reason FROM room_participants
               WHERE room_id = $1 AND user_id = $2 AND is_banned""", room.id, user_id)
        if banned is not None:
            raise errors.Forbidden("you are banned from this room", code="banned",
                                   details={"reason": banned["ban_reason"]})

    async def _check_may_join(self, room: Room, user_id: uuid.UUID, wallet_address: str) -> datetime | None:
        """The checks a newcomer (not yet a member) must pass before a seat is taken; for a
        gated room, when the holdings that admit them were read."""
        if room.room_type == "private":
            invited = await self._pool.fetchval(
                "SELECT 1 FROM room_invitations WHERE room_id = $1 AND user_id = $2",
                room.id, user_id)
            if invited is None:
                raise errors.Forbidden("this private room is joinable only by invitation",
                                       code="not_invited")
        elif room.room_type in ("token_gated", "nft_gated"):
            if self._gate is None:
                raise errors.Forbidden(
                    f"this {room.room_type} room requires {gating_requirement(room)}, and "
                    "token/NFT gating is not enabled on this server yet",
                    code="gating_not_configured",
                    details={"room_type": room.room_type,
                             "access_token_mint": room.access_token_mint,
                             "min_token_amount": room.min_token_amount,
                             "access_nft_collection": room.access_nft_collection})
            return await self._gate(wallet_address, room) or datetime.now(UTC)
        return None

    async def leave(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """End a membership; the owner cannot leave (close the room instead). The leaver's
        sockets in the room then close (1000) on every node."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock_for_removal(conn, room_id)
            role = await conn.fetchval(
                """SELECT role FROM room_participants WHERE room_id = $1 AND user_id = $2
                   AND is_member FOR UPDATE""", room_id, user_id)
            if role is None:
                await self._fetch(conn, room_id, user_id)  # 404 when the room is hidden or absent
                raise errors.Conflict("you are not a member of this room", code="not_member")
            if role == "owner":
                raise errors.Conflict("the owner cannot leave; close the room instead",
                                      code="owner_cannot_leave")
            await conn.execute(
                """UPDATE room_participants SET is_member = false, role = 'member', left_at = now()
                   WHERE room_id = $1 AND user_id = $2""", room_id, user_id)
            await users.audit(conn, user_id, "room.leave", "room", room_id)
        await self._removed(str(room_id), str(user_id), "left", None)

    @staticmethod
    async def _lock_for_removal(conn: asyncpg.Connection, room_id: uuid.UUID) -> None:
        """Share-lock the room row first: a removal then serialises with the room's durable
        writes (which update that row) and cannot deadlock with a ban (which locks it first)."""
        await conn.execute("SELECT 1 FROM study_rooms WHERE id = $1 FOR SHARE", room_id)

    # -- NFT collections (roomserver.nft.minting) --------------------------------------------

    async def record_collection(self, conn: asyncpg.Connection, room_id: uuid.UUID, mint: str,
                                metadata_uri: str) -> None:
        """Name the room's minted collection, in the caller's transaction (the minter's, which
        records the confirmed mint in the same commit)."""
        await conn.execute(
            "UPDATE study_rooms SET room_nft_mint = $2, metadata_uri = $3, updated_at = now() WHERE id = $1",
            room_id, mint, metadata_uri)

    # -- gating re-checks (here, and roomserver.gating.recheck) -------------------------------

    async def verified_membership(self, room_id: uuid.UUID, user_id: uuid.UUID) -> Participant | None:
        """`membership`, for REST reads of a room (history, documents, tutor): a gated room's
        member whose last on-chain verification is older than `gate_recheck_seconds` is
        re-verified first (the gate's cached decision may answer). One the gate now refuses
        loses the membership (audited `room.gate_removed`) and gets None. While the gate
        cannot answer (Unavailable) the member is kept and not re-stamped: the next read asks again."""
        row = await self._pool.fetchrow(
            f"""SELECT q.*, ({_stale("q", "$3")}) AS stale FROM (
                    SELECT p.room_id, p.user_id, p.role, u.wallet_address, u.username, p.joined_at,
                           p.last_active_at, p.gate_verified_at
                    FROM room_participants p JOIN users u ON u.id = p.user_id
                    WHERE p.room_id = $1 AND p.user_id = $2 AND p.is_member) q""",
            room_id, user_id, self.gate_recheck)
        if row is None:
            return None
        data = dict(row)
        stale = data.pop("stale")
        data.pop("gate_verified_at")
        member = Participant(**data)
        if stale:
            try:
                await self._reverify(await self._fetch(self._pool, room_id, user_id), member)
            except errors.Forbidden:
                return None
        return member

    async def _reverify(self, room: Room, member: Participant) -> None:
        """Ask the gate about a current member of gated `room`: stamp the verification time,
        or end the membership and raise the gate's refusal. Unavailable keeps the member."""
        if self._gate is None or member.wallet_address is None:  # (always read with the member)
            return
        try:
            verified_at = await self._gate(member.wallet_address, room)
        except errors.Forbidden as refusal:
            await self.remove_unqualified(room.id, member.user_id, refusal.code, refusal.message)
            raise
        except errors.Unavailable as exc:
            log.warning("room %s: member %s kept unverified: %s", room.id, member.user_id, exc.code)
            return
        await self.mark_gate_verified(room.id, [member.user_id], verified_at)

    async def mark_gate_verified(self, room_id: uuid.UUID, user_ids: list[uuid.UUID],
                                 at: datetime | None = None) -> None:
        """The gate admitted these members on holdings read `at` (default now). The stamp only
        moves forward: a cached decision older than the stamp changes nothing."""
        await self._pool.execute(
            """UPDATE room_participants
               SET gate_verified_at = GREATEST(gate_verified_at, COALESCE($3, now()))
               WHERE room_id = $1 AND user_id = ANY($2::uuid[]) AND is_member""", room_id, user_ids, at)

    async def stale_gate_members(self, room_id: uuid.UUID,
                                 older_than: float) -> dict[uuid.UUID, tuple[str, Role]]:
        """Non-owner members of gated `room_id` whose last verification is at least
        `older_than` seconds old (or who were never verified): user -> (wallet, role)."""
        rows = await self._pool.fetch(
            f"""SELECT p.user_id, u.wallet_address, p.role FROM room_participants p
                JOIN users u ON u.id = p.user_id
                WHERE p.room_id = $1 AND p.is_member AND {_stale("p", "$2")}""",
            room_id, timedelta(seconds=older_than))
        return {row["user_id"]: (row["wallet_address"], row["role"]) for row in rows}


    async def open_gated_rooms(self) -> list[Room]:
        """Every open token_gated / nft_gated room (seen by nobody: `my_role` is None)."""
        rows = await self._pool.fetch(
            f"""SELECT {_ROOM_COLUMNS} FROM study_rooms r
                WHERE r.is_active AND r.room_type IN ('token_gated', 'nft_gated')""", uuid.UUID(int=0))
        return [_room(row) for row in rows]

    async def gate_subjects(self, room_id: uuid.UUID,
                            user_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, Role | None]]:
        """For each existing user of `user_ids`: their wallet and their current role in the
        room (None when not a member)."""
        rows = await self._pool.fetch(
            """SELECT u.id, u.wallet_address, p.role FROM users u
               LEFT JOIN room_participants p ON p.room_id = $1 AND p.user_id = u.id AND p.is_member
               WHERE u.id = ANY($2::uuid[])""", room_id, user_ids)
        return {row["id"]: (row["wallet_address"], row["role"]) for row in rows}

    async def remove_unqualified(self, room_id: uuid.UUID, user_id: uuid.UUID, code: str,
                                 message: str) -> bool:
        """End a member's membership because gating no longer admits them (never the owner's);
        False if they were not a (non-owner) member. Audited as `room.gate_removed`. Their
        sockets in the room close (4106) on every node either way."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock_for_removal(conn, room_id)
            removed = await conn.fetchval(
                """UPDATE room_participants SET is_member = false, role = 'member', left_at = now()
                   WHERE room_id = $1 AND user_id = $2 AND is_member AND role <> 'owner'
                   RETURNING 1""", room_id, user_id)
            if removed is not None:
                await users.audit(conn, None, "room.gate_removed", "room", room_id,
                                  {"user_id": str(user_id), "code": code, "message": message})
        await self._removed(str(room_id), str(user_id), "no_longer_qualifies", code)
        return removed is not None

    async def participants(self, room_id: uuid.UUID, viewer_id: uuid.UUID) -> list[Participant]:
        """Current members, oldest first; for a private room only members may look. Wallet
        addresses are shown to members only (a non-member sees `wallet_address` null)."""
        room = await self.get(room_id, viewer_id)
        if room.room_type == "private" and room.my_role is None:
            raise errors.Forbidden("only members can see who is in a private room",
                                   code="not_member")
        rows = await self._pool.fetch(
            f"{_PARTICIPANT} WHERE p.room_id = $1 AND p.is_member ORDER BY p.joined_at, p.user_id",
            room_id)
        people = [Participant(**dict(row)) for row in rows]
        if room.my_role is None:
            return [p.model_copy(update={"wallet_address": None}) for p in people]
        return people

    # -- moderation -------------------------------------------------------------------------

    async def set_role(self, room_id: uuid.UUID, actor_id: uuid.UUID, target_id: uuid.UUID,
                       role: Literal["moderator", "member"]) -> Participant:
        """Owner only; the owner's own role never changes (ownership transfer is not offered)."""
        async with self._pool.acquire() as conn, conn.transaction():
            room = await self._locked_open_room(conn, room_id, actor_id)
            self._require_owner(room, actor_id)
            if target_id == room.owner_id:
                raise errors.Forbidden("the owner's role cannot change", code="owner_protected")
            updated = await conn.fetchval(
                """UPDATE room_participants SET role = $3
                   WHERE room_id = $1 AND user_id = $2 AND is_member RETURNING 1""",
                room_id, target_id, role)
            if updated is None:
                raise errors.NotFound("that user is not a member of this room",
                                      code="participant_not_found")
            await users.audit(conn, actor_id, "room.set_role", "room", room_id,
                              {"user_id": str(target_id), "role": role})
            row = await conn.fetchrow(f"{_PARTICIPANT} WHERE p.room_id = $1 AND p.user_id = $2",
                                      room_id, target_id)
            return Participant(**dict(row))

    async def ban(self, room_id: uuid.UUID, actor_id: uuid.UUID, target_id: uuid.UUID,
                  reason: str | None) -> Ban:
        """Remove `target_id` and keep them out (`moderation.check_removal`); their sockets in
        the room then close (4102) on every node."""
        async with self._pool.acquire() as conn, conn.transaction():
            room = await self._locked_open_room(conn, room_id, actor_id)
            target_role = await self._role_of(conn, room, target_id)
            check_removal("ban", room.my_role, target_role, is_self=target_id == actor_id)
            if target_role is None and await conn.fetchval("SELECT 1 FROM users WHERE id = $1",
                                                           target_id) is None:
                raise errors.NotFound("no such user", code="user_not_found")
            await conn.execute(
                """INSERT INTO room_participants (room_id, user_id, is_member, is_banned,
                       ban_reason, banned_by)
                   VALUES ($1, $2, false, true, $3, $4)
                   ON CONFLICT (room_id, user_id) DO UPDATE SET is_member = false,
                     role = 'member', is_banned = true, ban_reason = $3, banned_by = $4,
                     left_at = CASE WHEN room_participants.is_member THEN now()
                                    ELSE room_participants.left_at END""",
                room_id, target_id, reason, actor_id)
            await users.audit(conn, actor_id, "room.ban", "room", room_id,
                              {"user_id": str(target_id), "reason": reason})
        await self._removed(str(room_id), str(target_id), "banned", None)
        return Ban(room_id=room_id, user_id=target_id, reason=reason, banned_by=actor_id)

    async def kick(self, room_id: uuid.UUID, actor_id: uuid.UUID, target_id: uuid.UUID,
                   reason: str | None = None) -> None:
        """Close a member's sockets in the room on every node (4103), by the table in
        `moderation`; the membership stays (ban to end it). Audited as `room.kick`."""
        async with self._pool.acquire() as conn, conn.transaction():
            room = await self._locked_open_room(conn, room_id, actor_id)
            target_role = await self._role_of(conn, room, target_id)
            check_removal("kick", room.my_role, target_role, is_self=target_id == actor_id)
            await users.audit(conn, actor_id, "room.kick", "room", room_id,
                              {"user_id": str(target_id), "reason": reason})
        await self._removed(str(room_id), str(target_id), "kicked", None)

    @staticmethod
    async def _role_of(conn: asyncpg.Connection, room: Room, user_id: uuid.UUID) -> str | None:
        if user_id == room.owner_id:
            return "owner"
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT role FROM room_participants WHERE room_id = $1 AND user_id = $2 AND is_member",
            room.id, user_id)

    async def is_moderator(self, room_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Whether the user currently moderates the room (owner or moderator)."""
        member = await self.membership(room_id, user_id)
        return member is not None and is_moderator(member.role)

    async def standing(self, room_id: uuid.UUID, user_id: uuid.UUID) -> Reason | None:
        """None while the user is a member of the open room; else why not (`room_closed`,
        `banned`, or `left` for any other ended membership)."""
        row = await self._pool.fetchrow(
            """SELECT r.is_active, p.is_member, p.is_banned FROM study_rooms r
               LEFT JOIN room_participants p ON p.room_id = r.id AND p.user_id = $2
               WHERE r.id = $1""", room_id, user_id)
        if row is None or not row["is_active"]:
            return "room_closed"
        if row["is_banned"]:
            return "banned"
        return None if row["is_member"] else "left"

    async def unban(self, room_id: uuid.UUID, actor_id: uuid.UUID, target_id: uuid.UUID) -> None:
        """Lift a ban; the user may then join again (as a newcomer)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._moderation_target(conn, room_id, actor_id, target_id)
            lifted = await conn.fetchval(
                """UPDATE room_participants SET is_banned = false, ban_reason = NULL,
                       banned_by = NULL
                   WHERE room_id = $1 AND user_id = $2 AND is_banned RETURNING 1""",
                room_id, target_id)
            if lifted is None:
                raise errors.NotFound("that user is not banned from this room", code="ban_not_found")
            await users.audit(conn, actor_id, "room.unban", "room", room_id,
                              {"user_id": str(target_id)})

    async def _moderation_target(self, conn: asyncpg.Connection, room_id: uuid.UUID,
                                 actor_id: uuid.UUID, target_id: uuid.UUID) -> tuple[Room, str | None]:
        """The locked open room and the target's current role, after the shared permission checks."""
        room = await self._locked_open_room(conn, room_id, actor_id)
        self._require_moderator(room)
        if target_id == room.owner_id:
            raise errors.Forbidden("the owner cannot be banned", code="owner_protected")
        if target_id == actor_id:
            raise errors.Conflict("you cannot ban or unban yourself", code="self_moderation")
        if await conn.fetchval("SELECT 1 FROM users WHERE id = $1", target_id) is None:
            raise errors.NotFound("no such user", code="user_not_found")
        role = await conn.fetchval(
            "SELECT role FROM room_participants WHERE room_id = $1 AND user_id = $2 AND is_member",
            room_id, target_id)
        return room, role

    async def invite(self, room_id: uuid.UUID, actor_id: uuid.UUID, *,
                     user_id: uuid.UUID | None = None, wallet_address: str | None = None) -> Invitation:
        """Invite a signed-up user by id or wallet; inviting twice returns the first invitation."""
        async with self._pool.acquire() as conn, conn.transaction():
            room = await self._locked_open_room(conn, room_id, actor_id)
            self._require_moderator(room)
            target = await conn.fetchval(
                "SELECT id FROM users WHERE id = $1 OR wallet_address = $2", user_id, wallet_address)
            if target is None:
                raise errors.NotFound("no such user; a wallet must sign in once before it can be invited",
                                      code="user_not_found")
            row = await conn.fetchrow(
                """INSERT INTO room_invitations (room_id, user_id, invited_by) VALUES ($1, $2, $3)
                   ON CONFLICT (room_id, user_id) DO NOTHING
                   RETURNING room_id, user_id, invited_by, created_at""", room_id, target, actor_id)
            if row is None:
                row = await conn.fetchrow(
                    """SELECT room_id, user_id, invited_by, created_at FROM room_invitations
                       WHERE room_id = $1 AND user_id = $2""", room_id, target)
            else:
                await users.audit(conn, actor_id, "room.invite", "room", room_id,
                                  {"user_id": str(target)})
            return Invitation(**dict(row))

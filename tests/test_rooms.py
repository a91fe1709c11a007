"""RoomService against real PostgreSQL: the injected gate and gate validator, and `admit` as the
realtime layer will call it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from roomserver import errors
from roomserver.identity import users
from roomserver.identity.wallet import Wallet
from roomserver.rooms import Room, RoomDraft, RoomService
from roomserver.store.db import create_pool

MINT = "So11111111111111111111111111111111111111112"
COLLECTION = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def new_user(pool: asyncpg.Pool) -> tuple[uuid.UUID, str]:
    async with pool.acquire() as conn:
        user, _ = await users.upsert_by_wallet(conn, Wallet.generate().address)
    return user.id, user.wallet_address


class Holdings:
    """A gate over an in-memory table of who holds what, as the ledger-backed gate will be."""

    def __init__(self) -> None:
        self.holders: set[str] = set()
        self.down = False
        self.asked: list[tuple[str, uuid.UUID]] = []

    async def __call__(self, wallet: str, room: Room) -> None:
        self.asked.append((wallet, room.id))
        if self.down:
            raise errors.Unavailable("the RPC is unreachable", code="gating_unavailable")
        if wallet not in self.holders:
            raise errors.Forbidden(f"hold {room.min_token_amount} of {room.access_token_mint}",
                                   code="insufficient_holdings")


async def test_the_gate_decides_joins_to_gated_rooms(pool: asyncpg.Pool) -> None:
    gate = Holdings()
    rooms = RoomService(pool, gate=gate)
    owner, _ = await new_user(pool)
    room = await rooms.create(owner, RoomDraft(name="Holders", room_type="token_gated",
                                               access_token_mint=MINT, min_token_amount=Decimal(100)))
    poor, poor_wallet = await new_user(pool)
    rich, rich_wallet = await new_user(pool)
    gate.holders.add(rich_wallet)

    with pytest.raises(errors.Forbidden) as refused:
        await rooms.admit(poor, poor_wallet, room.id)
    assert refused.value.code == "insufficient_holdings"
    assert await rooms.membership(room.id, poor) is None

    member = await rooms.admit(rich, rich_wallet, room.id)
    assert (member.role, member.wallet_address) == ("member", rich_wallet)
    assert gate.asked == [(poor_wallet, room.id), (rich_wallet, room.id)]

    # With the RPC down, newcomers fail closed while admitted members (re-gated) and the owner keep access.
    gate.down = True
    with pytest.raises(errors.Unavailable) as down:
        await rooms.admit(poor, poor_wallet, room.id)
    assert down.value.code == "gating_unavailable"
    assert (await rooms.admit(rich, rich_wallet, room.id)).joined_at == member.joined_at
    assert (await rooms.admit(owner, "ignored", room.id)).role == "owner"
    assert len(gate.asked) == 4, "an existing member is re-gated at every join; the owner never"

    # Once the holdings are gone, the member's next join ends the membership.
    gate.down = False
    gate.holders.discard(rich_wallet)
    with pytest.raises(errors.Forbidden) as gone:
        await rooms.admit(rich, rich_wallet, room.id)
    assert gone.value.code == "insufficient_holdings"
    assert await rooms.membership(room.id, rich) is None


async def test_gated_joins_without_a_gate_name_the_requirement(pool: asyncpg.Pool) -> None:
    rooms = RoomService(pool)
    owner, _ = await new_user(pool)
    room = await rooms.create(owner, RoomDraft(name="NFT club", room_type="nft_gated",
                                               access_nft_collection=COLLECTION))
    visitor, wallet = await new_user(pool)
    with pytest.raises(errors.Forbidden) as refused:
        await rooms.admit(visitor, wallet, room.id)
    assert refused.value.code == "gating_not_configured"
    assert COLLECTION in refused.value.message


async def test_the_gate_validator_vets_new_gated_rooms(pool: asyncpg.Pool) -> None:
    seen: list[tuple[str, str, Decimal | None]] = []

    async def validator(room_type: str, address: str, amount: Decimal | None) -> None:
        seen.append((room_type, address, amount))
        if address != MINT:
            raise errors.BadRequest("that address is not a mint on the ledger", code="not_a_mint")

    rooms = RoomService(pool, gate_validator=validator)
    owner, _ = await new_user(pool)
    await rooms.create(owner, RoomDraft(name="ok", room_type="token_gated", access_token_mint=MINT,
                                        min_token_amount=Decimal("0.5")))
    with pytest.raises(errors.BadRequest) as bad:
        await rooms.create(owner, RoomDraft(name="bad", room_type="nft_gated",
                                            access_nft_collection=COLLECTION))
    assert bad.value.code == "not_a_mint"
    await rooms.create(owner, RoomDraft(name="plain", room_type="public"))
    assert seen == [("token_gated", MINT, Decimal("0.5")), ("nft_gated", COLLECTION, None)]
    names = await pool.fetch("SELECT name FROM study_rooms WHERE owner_id = $1 ORDER BY name", owner)
    assert [r["name"] for r in names] == ["ok", "plain"], "a refused room is not stored"


async def test_admit_confirms_and_membership_reports(pool: asyncpg.Pool) -> None:
    rooms = RoomService(pool)
    owner, _ = await new_user(pool)
    room = await rooms.create(owner, RoomDraft(name="Open", room_type="public"))
    user, wallet = await new_user(pool)
    assert await rooms.membership(room.id, user) is None
    first = await rooms.admit(user, wallet, room.id)
    assert await rooms.admit(user, wallet, room.id) == first
    assert await rooms.membership(room.id, user) == first
    assert (await rooms.get(room.id, user)).my_role == "member"
    with pytest.raises(errors.NotFound) as missing:
        await rooms.admit(user, wallet, uuid.uuid4())
    assert missing.value.code == "room_not_found"

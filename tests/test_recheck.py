"""Gated members re-verified: a real realtime node on a MemoryBroker, the real ledger over
HTTP through the real solana client, RoomService on real PostgreSQL; sockets are recording outlets."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import orjson
import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from roomserver import errors
from roomserver.chain import dev
from roomserver.chain.rpc import ChainReader
from roomserver.config import Settings
from roomserver.errors import CloseCode
from roomserver.gating.gatekeeper import Gatekeeper, MemoryGateCache
from roomserver.gating.recheck import Rechecker
from roomserver.gating.rooms import RoomGates
from roomserver.identity import users
from roomserver.realtime.broker import MemoryBroker
from roomserver.realtime.history import History
from roomserver.realtime.hub import Connection
from roomserver.realtime.node import Caller, Realtime, RealtimeConfig
from roomserver.realtime.presence import MemoryPresence
from roomserver.rooms import RoomDraft, RoomService
from roomserver.store.db import create_pool
from roomserver.store.ports import free_port
from tests.fakes import Outlet, wait_until

DUE = 0.1  # seconds after which a verification is due (the sweep's interval)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def keeper(rpc: AsyncClient) -> Gatekeeper:
    return Gatekeeper(ChainReader(rpc), MemoryGateCache(), ttl_seconds=30)


@pytest.fixture
def rooms(pool: asyncpg.Pool, keeper: Gatekeeper, node: Realtime) -> RoomService:
    gates = RoomGates(keeper)
    return RoomService(pool, gate=gates.check_join, gate_validator=gates.validate,
                       removed=node.remove)


@pytest.fixture
async def node(pool: asyncpg.Pool) -> AsyncIterator[Realtime]:
    async def live(session_id: uuid.UUID) -> bool:
        return True

    node = Realtime(broker=MemoryBroker(), store=MemoryPresence(), history=History(pool),
                    config=RealtimeConfig.from_settings(Settings()), session_live=live)
    await node.start()
    yield node
    await node.close()


async def user(pool: asyncpg.Pool, wallet: Keypair) -> uuid.UUID:
    async with pool.acquire() as conn:
        row, _ = await users.upsert_by_wallet(conn, str(wallet.pubkey()))
    return row.id


async def connect(node: Realtime, room_id: uuid.UUID, user_id: uuid.UUID) -> Outlet:
    outlet = Outlet()
    await node.attach(Connection(outlet, str(room_id), str(user_id)),
                      Caller(room_id=room_id, user_id=user_id, session_id=uuid.uuid4(), username=None,
                             wallet_address="w", role="member"))
    return outlet


def left_events(outlet: Outlet) -> list[dict[str, object]]:
    return [e for e in map(orjson.loads, outlet.frames) if e["type"] == "user_left"]


async def test_a_member_who_transfers_their_nft_away_is_removed_within_the_interval(
    pool: asyncpg.Pool, rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper, rooms: RoomService,
    node: Realtime,
) -> None:
    collection = await dev.create_collection(rpc, payer, "Study pass", "PASS", "u")
    owner_key, seller_key, stayer_key, buyer_key = Keypair(), Keypair(), Keypair(), Keypair()
    nft = await dev.mint_nft(rpc, payer, collection, seller_key.pubkey(), "Pass #1", "PASS", "u")
    await dev.mint_nft(rpc, payer, collection, stayer_key.pubkey(), "Pass #2", "PASS", "u")
    owner, seller, stayer, buyer = [await user(pool, k) for k in (owner_key, seller_key, stayer_key, buyer_key)]
    room = await rooms.create(owner, RoomDraft(name="Pass holders", room_type="nft_gated",
                                               access_nft_collection=str(collection)))
    await rooms.admit(seller, str(seller_key.pubkey()), room.id)
    await rooms.admit(stayer, str(stayer_key.pubkey()), room.id)
    owner_socket = await connect(node, room.id, owner)  # the owner holds no pass: exempt
    seller_tabs = [await connect(node, room.id, seller) for _ in range(2)]
    stayer_socket = await connect(node, room.id, stayer)

    interval = 0.3
    rechecker = Rechecker(node.local_users, rooms, keeper, interval=interval)
    rechecker.start()
    try:
        await wait_until(lambda: rechecker.stats.passes >= 2)
        assert rechecker.stats.removed == 0 and all(t.closed is None for t in seller_tabs)

        await dev.transfer(rpc, seller_key, nft, buyer_key.pubkey(), 1, payer)
        moved = time.monotonic()
        await wait_until(lambda: all(t.closed is not None for t in seller_tabs), timeout=10)
        assert time.monotonic() - moved < interval + 2.0, "removed within the re-check interval"
        # the sockets close inside the removal, just before the pass counts it: let it count
        await wait_until(lambda: rechecker.stats.removed > 0, timeout=5)
    finally:
        await rechecker.close()

    for tab in seller_tabs:
        assert tab.closed == (CloseCode.NO_LONGER_QUALIFIES, "no_longer_qualifies: not_in_collection")
    assert not CloseCode(tab.closed[0]).should_reconnect
    for outlet in (owner_socket, stayer_socket):  # the notice is published after the close
        await wait_until(lambda o=outlet: bool(left_events(o)), timeout=5)
        assert outlet.closed is None
        assert left_events(outlet) == [{"type": "user_left", "room_id": str(room.id),
                                        "user_id": str(seller), "reason": "no_longer_qualifies"}]
    assert node.local_users(str(room.id)) == {str(owner), str(stayer)}
    assert rechecker.stats.removed == 1
    assert await rooms.membership(room.id, seller) is None
    assert (await rooms.membership(room.id, stayer)) is not None
    audit = await pool.fetchrow("SELECT action, data FROM audit_log WHERE target_id = $1 "
                                "AND action = 'room.gate_removed'", str(room.id))
    assert audit is not None and audit["data"]["user_id"] == str(seller)

    with pytest.raises(errors.Forbidden) as refused:  # reconnecting: refused at once
        await rooms.admit(seller, str(seller_key.pubkey()), room.id)
    assert refused.value.code == "not_in_collection"
    joined = await rooms.admit(buyer, str(buyer_key.pubkey()), room.id)
    assert joined.role == "member"


async def test_with_the_ledger_unreachable_nobody_is_removed(
    pool: asyncpg.Pool, rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper, rooms: RoomService,
    node: Realtime,
) -> None:
    mint = await dev.create_mint(rpc, payer, 2)
    owner_key, holder_key = Keypair(), Keypair()
    await dev.mint_to(rpc, payer, mint, holder_key.pubkey(), 100_00)
    owner, holder = await user(pool, owner_key), await user(pool, holder_key)
    room = await rooms.create(owner, RoomDraft(name="Hundred club", room_type="token_gated",
                                               access_token_mint=str(mint), min_token_amount=Decimal(100)))
    await rooms.admit(holder, str(holder_key.pubkey()), room.id)
    socket = await connect(node, room.id, holder)
    await dev.transfer(rpc, holder_key, mint, owner_key.pubkey(), 1, payer)  # now one hundredth short

    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as dead:
        down = Gatekeeper(ChainReader(dead, timeout_seconds=5), MemoryGateCache())
        await asyncio.sleep(DUE)  # the join's verification is now due again
        blind = Rechecker(node.local_users, rooms, down, interval=DUE)
        assert await blind.run_once() == 0
        assert (blind.stats.unavailable, blind.stats.passes) == (1, 0)
        assert down.rpc_healthy is False
        assert socket.closed is None and await rooms.membership(room.id, holder) is not None
        with pytest.raises(errors.Unavailable) as refused:  # new joins fail closed
            gates = RoomGates(down)
            await RoomService(pool, gate=gates.check_join).admit(
                await user(pool, Keypair()), str(Keypair().pubkey()), room.id)
        assert refused.value.code == "gating_unavailable"

    # the same pass with the ledger reachable does remove them: the above was not vacuous
    assert await Rechecker(node.local_users, rooms, keeper, interval=DUE).run_once() == 1
    assert socket.closed == (CloseCode.NO_LONGER_QUALIFIES, "no_longer_qualifies: insufficient_holdings")
    assert await rooms.membership(room.id, holder) is None


async def test_the_sweep_removes_a_member_who_is_not_connected_anywhere(
    pool: asyncpg.Pool, rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper, rooms: RoomService,
    node: Realtime,
) -> None:
    collection = await dev.create_collection(rpc, payer, "Reading pass", "READ", "u")
    owner_key, away_key, stayer_key, buyer_key = Keypair(), Keypair(), Keypair(), Keypair()
    nft = await dev.mint_nft(rpc, payer, collection, away_key.pubkey(), "Read #1", "READ", "u")
    await dev.mint_nft(rpc, payer, collection, stayer_key.pubkey(), "Read #2", "READ", "u")
    owner, away, stayer = [await user(pool, k) for k in (owner_key, away_key, stayer_key)]
    room = await rooms.create(owner, RoomDraft(name="Readers", room_type="nft_gated",
                                               access_nft_collection=str(collection)))
    await rooms.admit(away, str(away_key.pubkey()), room.id)
    await rooms.admit(stayer, str(stayer_key.pubkey()), room.id)
    watcher = await connect(node, room.id, owner)  # nobody else has a socket anywhere
    await dev.transfer(rpc, away_key, nft, buyer_key.pubkey(), 1, payer)

    due = 3.0  # longer than the transfer takes
    sweep = Rechecker(node.local_users, rooms, keeper, interval=due)
    assert await sweep.recheck_room(room) == 0 and sweep.stats.checked == 0, "verified at the join: not due"
    await asyncio.sleep(due)
    assert await sweep.recheck_room(room) == 1
    assert sweep.stats.checked == 2, "both members asked, though neither is connected"
    assert await rooms.membership(room.id, away) is None
    assert await rooms.membership(room.id, stayer) is not None
    assert await rooms.stale_gate_members(room.id, due) == {}, "the stayer was stamped"
    await wait_until(lambda: bool(left_events(watcher)), timeout=5)
    assert left_events(watcher) == [{"type": "user_left", "room_id": str(room.id), "user_id": str(away),
                                     "reason": "no_longer_qualifies"}]


async def test_a_rest_read_re_verifies_a_stale_gated_membership(
    pool: asyncpg.Pool, rpc: AsyncClient, payer: Keypair,
) -> None:
    recheck = 2.5  # longer than the transfer takes
    keeper = Gatekeeper(ChainReader(rpc), MemoryGateCache(), ttl_seconds=recheck / 3)
    gates = RoomGates(keeper)
    rooms = RoomService(pool, gate=gates.check_join, gate_validator=gates.validate, gate_recheck_seconds=recheck)
    collection = await dev.create_collection(rpc, payer, "Lab pass", "LAB", "u")
    owner_key, seller_key, holder_key, buyer_key = Keypair(), Keypair(), Keypair(), Keypair()
    nft = await dev.mint_nft(rpc, payer, collection, seller_key.pubkey(), "Lab #1", "LAB", "u")
    await dev.mint_nft(rpc, payer, collection, holder_key.pubkey(), "Lab #2", "LAB", "u")
    owner, seller, holder = [await user(pool, k) for k in (owner_key, seller_key, holder_key)]
    room = await rooms.create(owner, RoomDraft(name="Lab", room_type="nft_gated",
                                               access_nft_collection=str(collection)))
    await rooms.admit(seller, str(seller_key.pubkey()), room.id)
    await rooms.admit(holder, str(holder_key.pubkey()), room.id)
    await dev.transfer(rpc, seller_key, nft, buyer_key.pubkey(), 1, payer)

    assert await rooms.verified_membership(room.id, seller) is not None, "verified at the join: still fresh"
    stamped = await pool.fetchval("SELECT gate_verified_at FROM room_participants WHERE room_id = $1 "
                                  "AND user_id = $2", room.id, holder)
    await asyncio.sleep(recheck)
    assert await rooms.verified_membership(room.id, seller) is None
    assert await rooms.membership(room.id, seller) is None, "the membership ended"
    audit = await pool.fetchrow("SELECT data FROM audit_log WHERE target_id = $1 AND action = 'room.gate_removed'",
                                str(room.id))
    assert audit is not None and audit["data"]["user_id"] == str(seller)
    assert await rooms.verified_membership(room.id, holder) is not None
    assert await pool.fetchval("SELECT gate_verified_at FROM room_participants WHERE room_id = $1 "
                               "AND user_id = $2", room.id, holder) > stamped
    assert (await rooms.verified_membership(room.id, owner)) is not None, "the owner is never re-gated"


async def test_a_socket_whose_membership_a_rest_read_ended_closes_at_the_next_sweep(
    pool: asyncpg.Pool, rpc: AsyncClient, payer: Keypair, node: Realtime,
) -> None:
    recheck = 2.5  # longer than the transfer takes
    keeper = Gatekeeper(ChainReader(rpc), MemoryGateCache(), ttl_seconds=recheck / 3)
    gates = RoomGates(keeper)
    rooms = RoomService(pool, gate=gates.check_join, gate_validator=gates.validate, gate_recheck_seconds=recheck)
    collection = await dev.create_collection(rpc, payer, "Studio pass", "STU", "u")
    owner_key, seller_key, buyer_key = Keypair(), Keypair(), Keypair()
    nft = await dev.mint_nft(rpc, payer, collection, seller_key.pubkey(), "Studio #1", "STU", "u")
    owner, seller = await user(pool, owner_key), await user(pool, seller_key)
    room = await rooms.create(owner, RoomDraft(name="Studio", room_type="nft_gated",
                                               access_nft_collection=str(collection)))
    await rooms.admit(seller, str(seller_key.pubkey()), room.id)
    socket = await connect(node, room.id, seller)
    await dev.transfer(rpc, seller_key, nft, buyer_key.pubkey(), 1, payer)
    await asyncio.sleep(recheck)
    assert await rooms.verified_membership(room.id, seller) is None
    assert socket.closed is None, "this service has no removal hook: like a removal notice that was lost"

    hooked = RoomService(pool, gate=gates.check_join, gate_validator=gates.validate,
                         gate_recheck_seconds=recheck, removed=node.remove)
    sweep = Rechecker(node.local_users, hooked, keeper, interval=600)  # nobody is due
    await sweep.recheck_room(room)
    await wait_until(lambda: socket.closed is not None, timeout=5)
    assert socket.closed is not None and socket.closed[0] == CloseCode.NO_LONGER_QUALIFIES

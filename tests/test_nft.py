"""NftService on the real ledger and PostgreSQL (no HTTP): the room announcement hook and the
sponsored spending limits."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from solana.rpc.async_api import AsyncClient

from roomserver import errors
from roomserver.chain.keys import load_server_keys
from roomserver.chain.rpc import ChainReader
from roomserver.nft.minting import NftService
from roomserver.nft.quota import SponsorLimits
from roomserver.rooms import RoomService
from roomserver.store.blobstore import MemoryBlobStore
from roomserver.store.db import create_pool
from tests.world import Shelf, add_room, add_user

NEW_ROOMS_MINTABLE = SponsorLimits(room_min_age_seconds=0)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, min_size=1, max_size=4)  # the app's codecs (jsonb)
    yield p
    await p.close()


async def _user(pool: asyncpg.Pool) -> tuple[uuid.UUID, str]:
    return await add_user(pool)


MENDEL = "Mendel grew Peas. Peas 0. Peas 1. Peas 2."


async def _room_and_highlight(pool: asyncpg.Pool, owner: uuid.UUID, author: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """A room of `owner` that `author` joined, and the author's room highlight "Peas." of a
    document the author uploaded and shared to the room."""
    room = await add_room(pool, owner, author, name="Genetics")
    shelf = Shelf(pool)
    doc = await shelf.document(author, [MENDEL], title="Mendel", rooms=[room])
    return room, await shelf.highlight(doc, author, "Peas.", room_id=room)


async def test_a_sponsored_highlight_mint_announces_itself_in_its_room(
        pool: asyncpg.Pool, rpc: AsyncClient, tmp_path: Path) -> None:
    keys = load_server_keys("", "", tmp_path, local_ledger=True)
    assert keys is not None
    said: list[tuple[uuid.UUID, str, dict[str, Any]]] = []

    async def announce(room_id: uuid.UUID, text: str, metadata: dict[str, Any]) -> None:
        said.append((room_id, text, metadata))

    service = NftService(pool, ChainReader(rpc), MemoryBlobStore(), keys, origin="http://rooms.test",
                         rooms=RoomService(pool), mode="sponsored", local_ledger=True, announce=announce,
                         limits=NEW_ROOMS_MINTABLE)
    (owner, owner_wallet), (author, author_wallet) = await _user(pool), await _user(pool)
    room, highlight = await _room_and_highlight(pool, owner, author)
    collection = await service.mint_room(room, owner, owner_wallet)
    assert collection.status == "confirmed" and said == []  # rooms do not announce
    minted = await service.mint_highlight(highlight, author, author_wallet)
    assert minted.status == "confirmed" and minted.collection_mint == collection.mint
    assert said == [(room, said[0][1], {"kind": "nft_minted", "mint": minted.mint, "highlight_id": str(highlight),
                                       "owner": author_wallet, "metadata_uri": minted.metadata_uri})]
    assert minted.mint in said[0][1]
    meta = json.loads(await service.blobs.get(minted.metadata_cid))
    assert minted.metadata_uri == f"http://rooms.test/ipfs/{minted.metadata_cid}"
    assert meta["properties"]["highlight"]["text"] == "Peas."


async def test_a_failing_announcement_does_not_undo_the_mint(pool: asyncpg.Pool, rpc: AsyncClient, tmp_path: Path) -> None:
    async def broken(room_id: uuid.UUID, text: str, metadata: dict[str, Any]) -> None:
        raise RuntimeError("history is down")

    keys = load_server_keys("", "", tmp_path, local_ledger=True)
    service = NftService(pool, ChainReader(rpc), MemoryBlobStore(), keys, origin="http://rooms.test",
                         rooms=RoomService(pool), mode="sponsored", local_ledger=True, announce=broken,
                         limits=NEW_ROOMS_MINTABLE)
    (owner, owner_wallet), (author, author_wallet) = await _user(pool), await _user(pool)
    room, highlight = await _room_and_highlight(pool, owner, author)
    await service.mint_room(room, owner, owner_wallet)
    minted = await service.mint_highlight(highlight, author, author_wallet)
    recorded = await pool.fetchval("SELECT mint_address FROM nft_highlights WHERE highlight_id = $1", highlight)
    assert recorded == minted.mint


# -- sponsored spending limits ------------------------------------------------------------


def sponsored(pool: asyncpg.Pool, rpc: AsyncClient, tmp_path: Path, **limits: int) -> NftService:
    keys = load_server_keys("", "", tmp_path, local_ledger=True)
    return NftService(pool, ChainReader(rpc), MemoryBlobStore(), keys, origin="http://rooms.test",
                      rooms=RoomService(pool), mode="sponsored", local_ledger=True,
                      limits=SponsorLimits(**{"room_min_age_seconds": 0, **limits}))


async def sponsored_today(pool: asyncpg.Pool) -> tuple[int, int]:
    """(mints, lamports) the deployment sponsored today, as the quota counts them."""
    row = await pool.fetchrow(
        """SELECT count(*) AS n, COALESCE(sum(sponsor_lamports), 0) AS lamports FROM nft_mint_intents
           WHERE mode = 'sponsored' AND status <> 'abandoned'
             AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'""")
    return int(row["n"]), int(row["lamports"])


async def test_the_deployment_daily_mint_count_and_lamport_budget_hold(
        pool: asyncpg.Pool, rpc: AsyncClient, tmp_path: Path) -> None:
    (owner, owner_wallet), (author, author_wallet) = await _user(pool), await _user(pool)
    room, highlight = await _room_and_highlight(pool, owner, author)
    mints, _ = await sponsored_today(pool)
    counted = sponsored(pool, rpc, tmp_path, mints_per_day=mints + 1)
    await counted.mint_room(room, owner, owner_wallet)
    with pytest.raises(errors.RateLimited) as full:
        await counted.mint_highlight(highlight, author, author_wallet)  # another user: the deployment's cap
    assert (full.value.code, full.value.details["limit"]) == ("mint_quota_exceeded", "mints_per_day")
    assert full.value.retry_after > 0 and full.value.details["resets_at"].endswith("+00:00")

    _, spent = await sponsored_today(pool)
    row = await pool.fetchrow("SELECT sponsor_lamports FROM nft_mint_intents WHERE subject_id = $1", room)
    assert row["sponsor_lamports"] > 2_000_000, "the mint's rent, the token account's rent and the fees"
    budget = sponsored(pool, rpc, tmp_path, lamports_per_day=spent + 1000)  # less than one more mint
    with pytest.raises(errors.RateLimited) as broke:
        await budget.mint_highlight(highlight, author, author_wallet)
    assert (broke.value.code, broke.value.details["limit"]) == ("mint_quota_exceeded", "lamports_per_day")
    assert broke.value.details["used"] == spent
    assert await pool.fetchval("SELECT count(*) FROM nft_mint_intents WHERE subject_id = $1", highlight) == 0
    balance = await budget.fee_payer_balance()
    assert balance is not None and balance == (await rpc.get_balance(budget.keys.fee_payer.pubkey)).value


async def test_concurrent_requests_cannot_overshoot_a_users_quota(
        pool: asyncpg.Pool, rpc: AsyncClient, tmp_path: Path) -> None:
    (owner, owner_wallet), (author, author_wallet) = await _user(pool), await _user(pool)
    room, first = await _room_and_highlight(pool, owner, author)
    service = sponsored(pool, rpc, tmp_path, user_mints_per_day=1)
    await service.mint_room(room, owner, owner_wallet)
    doc = await pool.fetchval("SELECT document_id FROM highlights WHERE id = $1", first)
    shelf = Shelf(pool)
    others = [await shelf.highlight(doc, author, f"Peas {i}.", room_id=room) for i in range(3)]
    results = await asyncio.gather(*(service.mint_highlight(h, author, author_wallet) for h in [first, *others]),
                                   return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1, results
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, errors.RateLimited) and r.code == "mint_quota_exceeded" for r in refused), refused


async def test_a_room_younger_than_the_minimum_age_is_not_sponsored(
        pool: asyncpg.Pool, rpc: AsyncClient, tmp_path: Path) -> None:
    (owner, owner_wallet), (author, _) = await _user(pool), await _user(pool)
    room = await add_room(pool, owner, author, name="Genetics")  # just created: under a second old
    with pytest.raises(errors.RateLimited) as young:
        await sponsored(pool, rpc, tmp_path, room_min_age_seconds=600).mint_room(room, owner, owner_wallet)
    assert young.value.code == "room_too_new" and 599 < young.value.retry_after <= 600
    assert await pool.fetchval("SELECT count(*) FROM nft_mint_intents WHERE subject_id = $1", room) == 0

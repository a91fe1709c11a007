"""NftService on the real ledger and PostgreSQL (no HTTP): the room announcement hook, server
keys, and the metadata card."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from roomserver.chain.keys import load_server_keys
from roomserver.chain.rpc import ChainReader
from roomserver.nft.minting import NftService
from roomserver.nft.quota import SponsorLimits
from roomserver.rooms import RoomService
from roomserver.store.blobstore import MemoryBlobStore
from tests.ledger.fixtures import ledger, payer, rpc

__all__ = ["ledger", "payer", "rpc"]
NEW_ROOMS_MINTABLE = SponsorLimits(room_min_age_seconds=0)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


async def _user(pool: asyncpg.Pool) -> tuple[uuid.UUID, str]:
    wallet = str(Keypair().pubkey())
    return await pool.fetchval("INSERT INTO users (wallet_address) VALUES ($1) RETURNING id", wallet), wallet


async def _room_and_highlight(pool: asyncpg.Pool, owner: uuid.UUID, author: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    room = await pool.fetchval(
        "INSERT INTO study_rooms (name, room_type, owner_id) VALUES ('Genetics', 'public', $1) RETURNING id", owner)
    doc = await pool.fetchval(
        """INSERT INTO documents (owner_id, title, filename, content_type, size_bytes, content_hash, blob_cid)
           VALUES ($1, 'Mendel', 'm.pdf', 'application/pdf', 1, $2, $2) RETURNING id""", author, uuid.uuid4().hex)
    highlight = await pool.fetchval(
        "INSERT INTO highlights (document_id, room_id, user_id, text) VALUES ($1, $2, $3, 'Peas.') RETURNING id",
        doc, room, author)
    return room, highlight


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

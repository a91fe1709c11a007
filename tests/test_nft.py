"""NftService on the real ledger and PostgreSQL (no HTTP): the room announcement hook, server
keys, and the metadata card."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import asyncpg
import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from roomserver.chain.keys import KeyFileError, load_key, load_server_keys
from roomserver.nft import card as nft_card
from roomserver.nft.minting import NftService
from roomserver.store.blobstore import MemoryBlobStore
from tests.ledger.fixtures import ledger, payer, rpc

__all__ = ["ledger", "payer", "rpc"]


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

    service = NftService(pool, rpc, MemoryBlobStore(), keys, origin="http://rooms.test", mode="sponsored",
                         local_ledger=True, announce=announce)
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
    service = NftService(pool, rpc, MemoryBlobStore(), keys, origin="http://rooms.test", mode="sponsored",
                         local_ledger=True, announce=broken)
    (owner, owner_wallet), (author, author_wallet) = await _user(pool), await _user(pool)
    room, highlight = await _room_and_highlight(pool, owner, author)
    await service.mint_room(room, owner, owner_wallet)
    minted = await service.mint_highlight(highlight, author, author_wallet)
    recorded = await pool.fetchval("SELECT mint_address FROM nft_highlights WHERE highlight_id = $1", highlight)
    assert recorded == minted.mint


def test_server_keys_are_generated_once_for_the_local_ledger_and_never_printed(tmp_path: Path) -> None:
    first = load_server_keys("", "", tmp_path, local_ledger=True)
    again = load_server_keys("", "", tmp_path, local_ledger=True)
    assert first is not None and again is not None
    assert first.fee_payer.pubkey == again.fee_payer.pubkey != first.collection_authority.pubkey
    secret_file = tmp_path / "keys" / "fee-payer.json"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert Keypair.from_bytes(bytes(json.loads(secret_file.read_text()))).pubkey() == first.fee_payer.pubkey
    shown = f"{first!r} {first.fee_payer} {first.collection_authority!r}"
    assert str(first.fee_payer.pubkey) in shown and str(first.collection_authority.pubkey) in shown
    for key in (first.fee_payer, first.collection_authority):
        assert str(key.keypair()) not in shown  # base58 of the 64-byte secret
    assert load_server_keys("", "", tmp_path / "elsewhere", local_ledger=False) is None


def test_a_configured_keypair_file_must_be_a_keypair(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"secret": "sk-not-a-keypair"}')
    with pytest.raises(KeyFileError) as raised:
        load_key("fee payer", str(bad), tmp_path / "unused.json", may_generate=True)
    assert "sk-not-a-keypair" not in str(raised.value)
    with pytest.raises(KeyFileError):
        load_key("fee payer", str(tmp_path / "missing.json"), tmp_path / "unused.json", may_generate=True)


def test_the_card_escapes_user_text_and_metadata_is_deterministic() -> None:
    facts = nft_card.HighlightFacts(
        highlight_id="h1", text='</text><script>alert("x")</script> & \x00\x07 "quoted"', context_before="",
        context_after="", page=None, document_id="d1", document_title="<b>Title</b>", room_id="r1",
        room_name="Room & co", author_wallet="W")
    svg = nft_card.highlight_svg(facts)
    card = ElementTree.fromstring(svg)  # well-formed XML: nothing escaped the text nodes
    assert not [e for e in card.iter() if e.tag.endswith("script")]
    texts = " ".join("".join(e.itertext()) for e in card)
    assert '<script>alert("x")</script> &' in texts and "<b>Title</b>" in texts
    image = "http://rooms.test/ipfs/img"
    assert nft_card.highlight_metadata(facts, image) == nft_card.highlight_metadata(facts, image)
    meta = json.loads(nft_card.highlight_metadata(facts, image))
    assert "Page" not in {a["trait_type"] for a in meta["attributes"]}
    assert len(meta["name"]) <= nft_card.MAX_NAME_CHARS

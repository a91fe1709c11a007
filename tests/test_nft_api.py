"""Minting over HTTP against the real ledger process and the real solana client.

The wallet-signed flow as a browser wallet runs it: the server returns a partially signed
transaction, the test signs it as fee payer with the user's ed25519 key, sends it to the
ledger itself, then asks the server to confirm. Sponsored mode runs a second app on the same
database whose fee payer signs and sends."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import asyncpg
import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from spl.token.instructions import get_associated_token_address

from roomserver.chain import dev
from roomserver.chain.rpc import ChainReader
from roomserver.chain.spl_token import (
    TOKEN_GROUP_MEMBER,
    TOKEN_METADATA,
    decode_account,
    decode_mint,
    encode_mint,
)
from roomserver.config import Settings
from roomserver.gating.gatekeeper import Gate, Gatekeeper, MemoryGateCache
from roomserver.ledger.process import LedgerProcess
from roomserver.library.embeddings import HashingEmbedder
from roomserver.store.ports import free_port
from tests import pdfs
from tests.clients import SignedInUser, sign_in
from tests.library_fixtures import ingest
from tests.servers import run_app

T22 = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ROOM_MIN_AGE = 1  # seconds a room must age before a sponsored mint
USER_MINTS_PER_DAY = 3


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory, ledger: LedgerProcess) -> Settings:
    port = free_port()
    return Settings.from_env({}, database_url=database_url, data_dir=Path(tmp_path_factory.mktemp("data")),
                             port=port, public_origin=f"http://127.0.0.1:{port}", rate_limit_per_minute=100_000,
                             solana_rpc_url=ledger.url)


@pytest.fixture(scope="module")
async def sponsored_url(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    sponsored = dataclasses.replace(settings, port=port, public_origin=f"http://127.0.0.1:{port}",
                                    nft_mint_mode="sponsored", nft_sponsored_room_min_age_seconds=ROOM_MIN_AGE,
                                    nft_sponsored_user_mints_per_day=USER_MINTS_PER_DAY)
    async with run_app(sponsored, embedder=HashingEmbedder()) as url:
        yield url


@pytest.fixture(scope="module")
async def base_url(settings: Settings) -> AsyncIterator[str]:
    """The app with the hashing embedder: these tests ingest documents but never search them."""
    async with run_app(settings, embedder=HashingEmbedder()) as url:
        yield url


# -- helpers ------------------------------------------------------------------------------


ORIGIN = "On the Origin of Species"


async def make_highlight(http: httpx.AsyncClient, user: SignedInUser, room_id: str | None, text: str,
                         page: int = 7) -> str:
    """`user`'s highlight of `text` on `page` of a document they uploaded (ingested, and shared
    to the room when there is one), all through the REST API."""
    pages = [f"Chapter {n}." for n in range(1, page)] + [f"before the passage {text} after the passage"]
    doc = await ingest(http, user, pdfs.simple_pdf(pages), "origin.pdf", title=ORIGIN)
    if room_id is not None:
        shared = await http.post(f"/api/v1/documents/{doc['id']}/share", headers=user.headers,
                                 json={"room_id": room_id})
        assert shared.status_code == 201, shared.text
    made = await http.post(f"/api/v1/documents/{doc['id']}/highlights", headers=user.headers,
                           json={"text": text, "context_before": "before the passage",
                                 "context_after": "after the passage", "room_id": room_id})
    assert made.status_code == 201, made.text
    assert made.json()["page"] == page
    return str(made.json()["id"])


async def create_room(http: httpx.AsyncClient, owner: SignedInUser, **fields: Any) -> str:
    body = {"name": "Evolution reading group", "room_type": "public", "topic": "biology", **fields}
    response = await http.post("/api/v1/rooms", json=body, headers=owner.headers)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def wallet_send(rpc: AsyncClient, user: SignedInUser, result: dict[str, Any]) -> str:
    """What the wallet does: check it is the fee payer, sign the message, send to the ledger."""
    tx = VersionedTransaction.from_bytes(base64.b64decode(result["transaction"]))
    assert tx.message.account_keys[0] == Pubkey.from_bytes(user.wallet.public_key)
    assert tx.signatures[0] == Signature.default() and all(s != Signature.default() for s in tx.signatures[1:])
    signature = Signature.from_bytes(user.wallet.sign(to_bytes_versioned(tx.message)))
    signed = VersionedTransaction.populate(tx.message, [signature, *tx.signatures[1:]])
    opts = TxOpts(skip_confirmation=False, preflight_commitment=Confirmed)
    return str((await rpc.send_transaction(signed, opts=opts)).value)


async def funded_user(http: httpx.AsyncClient, rpc: AsyncClient) -> SignedInUser:
    user = await sign_in(http)
    await dev.airdrop(rpc, Pubkey.from_bytes(user.wallet.public_key), dev.LAMPORTS_PER_SOL)
    return user


async def mint_wallet_signed(http: httpx.AsyncClient, rpc: AsyncClient, user: SignedInUser, path: str,
                             body: dict[str, str]) -> dict[str, Any]:
    started = await http.post(path, json=body, headers=user.headers)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "pending"
    signature = await wallet_send(rpc, user, started.json())
    confirmed = await http.post("/api/v1/nft/confirm", json={"signature": signature}, headers=user.headers)
    assert confirmed.status_code == 200, confirmed.text
    return {**confirmed.json(), "sent_signature": signature}


async def ledger_mint(rpc: AsyncClient, address: str) -> Any:
    account = (await rpc.get_account_info(Pubkey.from_string(address), Confirmed)).value
    assert account is not None and account.owner == T22
    return decode_mint(bytes(account.data))


async def held(rpc: AsyncClient, wallet: SignedInUser, mint: str) -> int:
    ata = get_associated_token_address(Pubkey.from_bytes(wallet.wallet.public_key), Pubkey.from_string(mint), T22)
    account = (await rpc.get_account_info(ata, Confirmed)).value
    return 0 if account is None else decode_account(bytes(account.data)).amount


@dataclasses.dataclass
class World:
    owner: SignedInUser
    student: SignedInUser
    room_id: str
    collection: str
    highlight_id: str
    nft: dict[str, Any]


@pytest.fixture(scope="module")
async def world(base_url: str, rpc: AsyncClient) -> World:
    """An owner mints their room as a collection, a student mints a highlight into it: both wallet-signed."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        owner, student = await funded_user(http, rpc), await funded_user(http, rpc)
        room_id = await create_room(http, owner)
        room_nft = await mint_wallet_signed(http, rpc, owner, "/api/v1/nft/mint-room", {"room_id": room_id})
        assert (await http.post(f"/api/v1/rooms/{room_id}/join", headers=student.headers)).status_code == 200
        text = "Endless forms most beautiful & most wonderful <have been>, and are being, evolved."
        highlight_id = await make_highlight(http, student, room_id, text)
        nft = await mint_wallet_signed(http, rpc, student, "/api/v1/nft/mint-highlight", {"highlight_id": highlight_id})
    return World(owner, student, room_id, room_nft["mint"], highlight_id, nft)


# -- wallet-signed ------------------------------------------------------------------------


async def test_wallet_signed_highlight_is_a_supply_one_member_nft_on_the_ledger(world: World, rpc: AsyncClient) -> None:
    nft = world.nft
    assert nft["status"] == "confirmed" and nft["signature"] == nft["sent_signature"]
    assert nft["collection_mint"] == world.collection and nft["owner"] == world.student.wallet.address
    assert nft["fee_payer"] == world.student.wallet.address and nft["transaction"] is None
    mint = await ledger_mint(rpc, nft["mint"])
    assert (mint.supply, mint.decimals, mint.mint_authority) == (1, 0, None)
    meta = mint.extension(TOKEN_METADATA).state
    assert meta["uri"] == nft["metadata_uri"] and meta["name"] == nft["name"] and meta["mint"] == nft["mint"]
    member = mint.extension(TOKEN_GROUP_MEMBER).state
    assert (member["group"], member["memberNumber"]) == (world.collection, 1)
    assert await held(rpc, world.student, nft["mint"]) == 1
    room = await ledger_mint(rpc, world.collection)
    assert (room.supply, room.mint_authority) == (1, None)
    assert await held(rpc, world.owner, world.collection) == 1


async def test_metadata_is_served_by_cid_and_matches_the_highlight(world: World, http: httpx.AsyncClient) -> None:
    uri = world.nft["metadata_uri"]
    assert uri.endswith("/ipfs/" + world.nft["metadata_cid"])
    response = await http.get(f"/ipfs/{world.nft['metadata_cid']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["etag"].strip('"') == world.nft["metadata_cid"]
    meta = response.json()
    assert meta["name"] == world.nft["name"] and meta["symbol"] == world.nft["symbol"]
    hl = meta["properties"]["highlight"]
    assert hl["text"].startswith("Endless forms most beautiful & most wonderful <have been>")
    assert (hl["id"], hl["page"], hl["document_title"], hl["room_id"]) == (
        world.highlight_id, 7, "On the Origin of Species", world.room_id)
    assert (hl["context_before"], hl["context_after"]) == ("before the passage", "after the passage")
    traits = {a["trait_type"]: a["value"] for a in meta["attributes"]}
    assert traits["Room"] == "Evolution reading group" and traits["Page"] == 7
    assert traits["Highlighted by"] == world.student.wallet.address
    image = await http.get(meta["image"].removeprefix(str(http.base_url).rstrip("/")))
    assert image.status_code == 200 and image.headers["content-type"] == "image/svg+xml"
    card = ElementTree.fromstring(image.content)  # well-formed: the user's text is escaped
    passage = " ".join(t.text or "" for t in card.iter("{http://www.w3.org/2000/svg}tspan"))
    assert passage.startswith("Endless forms most beautiful & most wonderful <have been>")
    assert meta["properties"]["files"] == [{"uri": meta["image"], "type": "image/svg+xml"}]


async def test_confirming_again_and_minting_again(world: World, http: httpx.AsyncClient, database_url: str) -> None:
    again = await http.post("/api/v1/nft/confirm", json={"signature": world.nft["signature"]},
                            headers=world.student.headers)
    assert again.status_code == 200 and again.json()["mint"] == world.nft["mint"]
    twice = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": world.highlight_id},
                            headers=world.student.headers)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_minted"
    assert twice.json()["error"]["details"]["mint"] == world.nft["mint"]
    room_twice = await http.post("/api/v1/nft/mint-room", json={"room_id": world.room_id}, headers=world.owner.headers)
    assert room_twice.status_code == 409 and room_twice.json()["error"]["code"] == "already_minted"
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT mint_address, status FROM nft_highlights WHERE highlight_id = $1",
                                uuid.UUID(world.highlight_id))
    finally:
        await conn.close()
    assert [(r["mint_address"], r["status"]) for r in rows] == [(world.nft["mint"], "confirmed")]


async def test_collection_lists_its_members_from_the_ledger(world: World, http: httpx.AsyncClient) -> None:
    detail = await http.get(f"/api/v1/nft/collections/{world.collection}")
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert (body["size"], body["room_id"], body["symbol"]) == (1, world.room_id, "ROOM")
    assert [(m["mint"], m["uri"], m["member_number"], m["highlight_id"]) for m in body["members"]] == [
        (world.nft["mint"], world.nft["metadata_uri"], 1, world.highlight_id)]
    listing = (await http.get("/api/v1/nft/collections")).json()["collections"]
    assert world.collection in [c["mint"] for c in listing]
    not_a_collection = await http.get(f"/api/v1/nft/collections/{world.nft['mint']}")
    assert not_a_collection.status_code == 404 and not_a_collection.json()["error"]["code"] == "collection_not_found"
    garbage = await http.get("/api/v1/nft/collections/not-an-address")
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_mint"


async def test_a_highlight_nft_opens_a_room_gated_on_the_room_collection(world: World, http: httpx.AsyncClient,
                                                                         rpc: AsyncClient) -> None:
    gated = await create_room(http, world.owner, name="Members only", room_type="nft_gated",
                              access_nft_collection=world.collection)
    joined = await http.post(f"/api/v1/rooms/{gated}/join", headers=world.student.headers)
    assert joined.status_code == 200, joined.text
    outsider = await sign_in(http)
    refused = await http.post(f"/api/v1/rooms/{gated}/join", headers=outsider.headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_in_collection"
    keeper = Gatekeeper(ChainReader(rpc), MemoryGateCache())
    decision = await keeper.check(world.student.wallet.address, Gate("nft", world.collection))
    assert decision.allowed and decision.details["nft"] == world.nft["mint"]


# -- refusals -----------------------------------------------------------------------------


async def test_confirm_refuses_a_signature_of_another_transaction(world: World, http: httpx.AsyncClient,
                                                                  rpc: AsyncClient) -> None:
    highlight = await make_highlight(http, world.student, world.room_id, "A struggle for life.")
    pending = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": highlight},
                              headers=world.student.headers)
    assert pending.status_code == 200 and pending.json()["status"] == "pending"
    other = await dev.airdrop(rpc, Keypair().pubkey(), dev.LAMPORTS_PER_SOL)
    for signature in (other, str(Signature.new_unique())):
        refused = await http.post("/api/v1/nft/confirm", json={"signature": signature}, headers=world.student.headers)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_transaction"
    # the student's own mint, confirmed by someone else, is not theirs to confirm
    stranger = await sign_in(http)
    theirs = await http.post("/api/v1/nft/confirm", json={"signature": world.nft["signature"]}, headers=stranger.headers)
    assert theirs.status_code == 400 and theirs.json()["error"]["code"] == "unknown_transaction"
    malformed = await http.post("/api/v1/nft/confirm", json={"signature": "x" * 70}, headers=world.student.headers)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_signature"


async def test_confirm_refuses_a_mint_whose_metadata_differs(world: World, http: httpx.AsyncClient, rpc: AsyncClient,
                                                             ledger: LedgerProcess, database_url: str) -> None:
    highlight = await make_highlight(http, world.student, world.room_id, "Natural selection.")
    pending = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": highlight},
                              headers=world.student.headers)
    # a retried request before signing hands back the very same transaction
    retry = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": highlight},
                            headers=world.student.headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["transaction"] == pending.json()["transaction"]
    signature = await wallet_send(rpc, world.student, pending.json())
    address = Pubkey.from_string(pending.json()["mint"])
    account = (await rpc.get_account_info(address, Confirmed)).value
    mint = decode_mint(bytes(account.data))
    extensions = tuple(
        dataclasses.replace(e, state={**e.state, "uri": "https://evil.example/other.json"}) if e.kind == TOKEN_METADATA else e
        for e in mint.extensions)
    data = encode_mint(dataclasses.replace(mint, extensions=extensions))
    spec = {"lamports": account.lamports, "owner": str(T22), "data": [base64.b64encode(data).decode(), "base64"]}
    body = {"jsonrpc": "2.0", "id": 1, "method": "ledger_setAccount", "params": [str(address), spec]}
    async with httpx.AsyncClient() as client:
        assert "error" not in (await client.post(ledger.url, json=body)).json()
    refused = await http.post("/api/v1/nft/confirm", json={"signature": signature}, headers=world.student.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "mint_mismatch"
    assert "metadata uri differs" in refused.json()["error"]["details"]["problems"]
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM nft_highlights WHERE highlight_id = $1", uuid.UUID(highlight)) == 0
    finally:
        await conn.close()


async def test_only_authors_and_owners_mint(world: World, http: httpx.AsyncClient) -> None:
    def code(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["error"]["code"]

    other = await sign_in(http)
    mine = {"highlight_id": world.highlight_id}
    assert code(await http.post("/api/v1/nft/mint-highlight", json=mine, headers=other.headers)) == (
        403, "not_highlight_author")
    assert code(await http.post("/api/v1/nft/mint-room", json={"room_id": world.room_id}, headers=other.headers)) == (
        403, "not_room_owner")
    unknown = {"highlight_id": str(uuid.uuid4())}
    assert code(await http.post("/api/v1/nft/mint-highlight", json=unknown, headers=other.headers)) == (
        404, "highlight_not_found")
    assert code(await http.post("/api/v1/nft/mint-room", json={"room_id": str(uuid.uuid4())}, headers=other.headers)) == (
        404, "room_not_found")
    unminted_room = await create_room(http, other, name="No collection yet")
    loose = await make_highlight(http, other, unminted_room, "Variation under domestication.")
    assert code(await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": loose}, headers=other.headers)) == (
        409, "room_collection_missing")
    roomless = await make_highlight(http, other, None, "Variation under nature.")
    assert code(await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": roomless}, headers=other.headers)) == (
        409, "highlight_not_in_room")
    assert code(await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": "nope"}, headers=other.headers)) == (
        400, "validation_error")
    assert code(await http.post("/api/v1/nft/mint-highlight", json=mine)) == (401, "not_authenticated")


# -- sponsored ----------------------------------------------------------------------------


async def test_sponsored_mode_mints_without_the_wallet_paying(sponsored_url: str, rpc: AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=sponsored_url, timeout=30) as http:
        owner, student = await sign_in(http), await sign_in(http)  # wallets with no SOL at all
        room_id = await create_room(http, owner, name="Sponsored seminar")
        assert (await http.post(f"/api/v1/rooms/{room_id}/join", headers=student.headers)).status_code == 200
        room = await mint_aged_room(http, owner, room_id)
        assert room.json()["status"] == "confirmed" and room.json()["transaction"] is None
        assert room.json()["fee_payer"] not in (owner.wallet.address, student.wallet.address)
        highlight = await make_highlight(http, student, room_id, "Survival of the fittest.")
        minted = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": highlight}, headers=student.headers)
        assert minted.status_code == 200, minted.text
        nft = minted.json()
        assert nft["status"] == "confirmed" and nft["signature"] and nft["collection_mint"] == room.json()["mint"]
        mint = await ledger_mint(rpc, nft["mint"])
        assert (mint.supply, mint.mint_authority) == (1, None)
        assert mint.extension(TOKEN_GROUP_MEMBER).state["group"] == room.json()["mint"]
        assert await held(rpc, student, nft["mint"]) == 1
        assert (await rpc.get_balance(Pubkey.from_bytes(student.wallet.public_key))).value == 0
        twice = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": highlight}, headers=student.headers)
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_minted"


async def mint_aged_room(http: httpx.AsyncClient, owner: SignedInUser, room_id: str) -> httpx.Response:
    """A fresh room is refused (room_too_new, Retry-After) until it is ROOM_MIN_AGE old, then minted."""
    early = await http.post("/api/v1/nft/mint-room", json={"room_id": room_id}, headers=owner.headers)
    assert early.status_code == 429 and early.json()["error"]["code"] == "room_too_new", early.text
    wait = early.json()["error"]["details"]["retry_after"]
    assert 0 < wait <= ROOM_MIN_AGE and early.headers["retry-after"] == "1"
    await asyncio.sleep(wait + 0.05)
    minted = await http.post("/api/v1/nft/mint-room", json={"room_id": room_id}, headers=owner.headers)
    assert minted.status_code == 200, minted.text
    return minted


async def intents(database_url: str, user_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM nft_mint_intents WHERE user_id = $1",
                                       uuid.UUID(user_id)))
    finally:
        await conn.close()


async def test_sponsored_mints_stop_at_the_per_user_daily_quota_before_anything_is_signed(
        sponsored_url: str, rpc: AsyncClient, database_url: str) -> None:
    async with httpx.AsyncClient(base_url=sponsored_url, timeout=30) as http:
        owner, student = await sign_in(http), await sign_in(http)
        room_id = await create_room(http, owner, name="Quota seminar")
        assert (await http.post(f"/api/v1/rooms/{room_id}/join", headers=student.headers)).status_code == 200
        collection = (await mint_aged_room(http, owner, room_id)).json()
        fee_payer = Pubkey.from_string(collection["fee_payer"])
        highlights = [await make_highlight(http, student, room_id, f"Passage {i}.")
                      for i in range(USER_MINTS_PER_DAY + 1)]
        for highlight in highlights[:USER_MINTS_PER_DAY]:
            minted = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": highlight},
                                     headers=student.headers)
            assert minted.status_code == 200 and minted.json()["status"] == "confirmed", minted.text
        balance = (await rpc.get_balance(fee_payer, Confirmed)).value
        before = await intents(database_url, student.user_id)
        refused = await http.post("/api/v1/nft/mint-highlight", json={"highlight_id": highlights[-1]},
                                  headers=student.headers)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "mint_quota_exceeded"
        assert (error["details"]["limit"], error["details"]["limit_value"], error["details"]["used"]) == (
            "user_mints_per_day", USER_MINTS_PER_DAY, USER_MINTS_PER_DAY)
        resets = datetime.fromisoformat(error["details"]["resets_at"])
        now = datetime.now(UTC)
        assert resets == datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        assert abs(int(refused.headers["retry-after"]) - (resets - now).total_seconds()) < 5
        assert await intents(database_url, student.user_id) == before, "nothing was signed or reserved"
        assert (await rpc.get_balance(fee_payer, Confirmed)).value == balance, "the fee payer paid nothing"
        # the quota is the user's: the room's owner still mints
        other_room = await create_room(http, owner, name="Second seminar")
        await mint_aged_room(http, owner, other_room)

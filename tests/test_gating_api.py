"""Token/NFT-gated rooms over real HTTP: the app (uvicorn, embedded PostgreSQL) points at a ledger
process this module owns, on which the tests mint tokens and NFTs with the real solana client."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roomserver.chain import dev
from roomserver.config import Settings
from roomserver.errors import CloseCode
from roomserver.identity.wallet import Wallet
from roomserver.ledger.process import LedgerProcess, start_ledger
from roomserver.store.ports import free_port
from tests.clients import SignedInUser, health_detail, sign_in
from tests.ws_client import RoomClient, ws_url

RECHECK_SECONDS = 1


@dataclasses.dataclass
class Chain:
    """The module's ledger: stoppable and restartable on the same port and data."""

    data_dir: Path
    port: int
    process: LedgerProcess

    @property
    def url(self) -> str:
        return self.process.url

    def restart(self) -> None:
        self.process = start_ledger(self.data_dir, port=self.port, dev=True)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    data_dir, port = tmp_path_factory.mktemp("gating-ledger"), free_port()
    chain = Chain(data_dir, port, start_ledger(data_dir, port=port, dev=True))
    yield chain
    chain.process.stop()


@pytest.fixture(scope="module")
def settings(settings: Settings, chain: Chain) -> Settings:
    return dataclasses.replace(settings, solana_rpc_url=chain.url, gate_recheck_seconds=RECHECK_SECONDS)


@pytest.fixture(scope="module")
async def rpc(chain: Chain) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(chain.url) as client:
        yield client


@pytest.fixture(scope="module")
async def payer(rpc: AsyncClient) -> Keypair:
    keypair = Keypair()
    await dev.airdrop(rpc, keypair.pubkey(), 100 * dev.LAMPORTS_PER_SOL)
    return keypair


@dataclasses.dataclass
class Person:
    """A signed-in user whose wallet can also sign ledger transactions."""

    user: SignedInUser
    keypair: Keypair

    @property
    def pubkey(self) -> Pubkey:
        return self.keypair.pubkey()


async def person(http: httpx.AsyncClient) -> Person:
    seed = os.urandom(32)
    keypair, wallet = Keypair.from_seed(seed), Wallet.from_seed(seed)
    assert str(keypair.pubkey()) == wallet.address
    return Person(await sign_in(http, wallet), keypair)


async def create(http: httpx.AsyncClient, owner: Person, **body: Any) -> httpx.Response:
    body.setdefault("name", f"gated {uuid.uuid4().hex[:6]}")
    return await http.post("/api/v1/rooms", json=body, headers=owner.user.headers)


async def join(http: httpx.AsyncClient, who: Person, room_id: str) -> httpx.Response:
    return await http.post(f"/api/v1/rooms/{room_id}/join", headers=who.user.headers)


def error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()["error"]
    assert body["message"]
    return body


async def test_token_gate_admits_holders_and_tells_the_short_what_is_required(
    http: httpx.AsyncClient, rpc: AsyncClient, payer: Keypair
) -> None:
    owner, holder, short, split = [await person(http) for _ in range(4)]
    mint = await dev.create_mint(rpc, payer, 2)
    await dev.mint_to(rpc, payer, mint, holder.pubkey, 100_00)
    await dev.mint_to(rpc, payer, mint, short.pubkey, 99_00)
    await dev.mint_to(rpc, payer, mint, split.pubkey, 60_00)  # + 40 in a second account
    second = await dev.create_token_account(rpc, payer, mint, split.pubkey)
    await dev.mint_to_account(rpc, payer, mint, second, 40_00)

    made = await create(http, owner, room_type="token_gated", access_token_mint=str(mint),
                        min_token_amount=100)
    assert made.status_code == 201, made.text
    room = made.json()
    assert (room["access_token_mint"], room["min_token_amount"]) == (str(mint), "100")

    joined = await join(http, holder, room["id"])
    assert joined.status_code == 200 and joined.json()["role"] == "member"
    assert (await join(http, split, room["id"])).status_code == 200
    refused = error(await join(http, short, room["id"]), 403)
    assert refused["code"] == "insufficient_holdings"
    assert "at least 100" in refused["message"] and str(mint) in refused["message"]
    assert refused["details"]["mint"] == str(mint) and refused["details"]["required"] == "100"
    assert float(refused["details"]["held"]) == 99
    participants = await http.get(f"/api/v1/rooms/{room['id']}/participants", headers=owner.user.headers)
    assert {p["user_id"] for p in participants.json()["participants"]} == {
        owner.user.user_id, holder.user.user_id, split.user.user_id}


async def test_token_2022_holdings_count(http: httpx.AsyncClient, rpc: AsyncClient, payer: Keypair) -> None:
    owner, holder, short = [await person(http) for _ in range(3)]
    mint = await dev.create_mint(rpc, payer, 6, token_2022=True)
    await dev.mint_to(rpc, payer, mint, holder.pubkey, 2_500_000)
    await dev.mint_to(rpc, payer, mint, short.pubkey, 2_499_999)
    made = await create(http, owner, room_type="token_gated", access_token_mint=str(mint),
                        min_token_amount="2.5")
    assert made.status_code == 201, made.text
    assert (await join(http, holder, made.json()["id"])).status_code == 200
    refused = error(await join(http, short, made.json()["id"]), 403)
    assert refused["code"] == "insufficient_holdings" and refused["details"]["held"] == "2.499999"


async def test_nft_gate_admits_collection_members_and_refuses_lookalikes(
    http: httpx.AsyncClient, rpc: AsyncClient, payer: Keypair
) -> None:
    owner, member, faker = [await person(http) for _ in range(3)]
    collection = await dev.create_collection(rpc, payer, "Chem Club", "CHEM", "u")
    copycat = await dev.create_collection(rpc, payer, "Chem Club", "CHEM", "u")
    await dev.mint_nft(rpc, payer, collection, member.pubkey, "Chem Club #1", "CHEM", "u")
    await dev.mint_nft(rpc, payer, copycat, faker.pubkey, "Chem Club #1", "CHEM", "u")

    made = await create(http, owner, room_type="nft_gated", access_nft_collection=str(collection))
    assert made.status_code == 201, made.text
    room = made.json()
    assert room["access_nft_collection"] == str(collection) and room["min_token_amount"] is None
    assert (await join(http, member, room["id"])).status_code == 200
    refused = error(await join(http, faker, room["id"]), 403)
    assert refused["code"] == "not_in_collection"
    assert str(collection) in refused["message"] and refused["details"]["collection"] == str(collection)


async def test_room_creation_validates_the_gate_on_the_ledger(
    http: httpx.AsyncClient, rpc: AsyncClient, payer: Keypair
) -> None:
    owner, wallet_holder = await person(http), Keypair()
    await dev.airdrop(rpc, wallet_holder.pubkey(), dev.LAMPORTS_PER_SOL)  # exists, but not a mint
    mint = await dev.create_mint(rpc, payer, 2)
    collection = await dev.create_collection(rpc, payer, "Real", "REAL", "u")
    member_nft = await dev.mint_nft(rpc, payer, collection, owner.pubkey, "Real #1", "REAL", "u")
    cases = {
        "missing mint": {"room_type": "token_gated", "access_token_mint": str(Keypair().pubkey()),
                         "min_token_amount": 1},
        "a wallet, not a mint": {"room_type": "token_gated",
                                 "access_token_mint": str(wallet_holder.pubkey()), "min_token_amount": 1},
        "finer than the decimals": {"room_type": "token_gated", "access_token_mint": str(mint),
                                    "min_token_amount": "1.001"},
        "fungible mint as collection": {"room_type": "nft_gated", "access_nft_collection": str(mint)},
        "member NFT as collection": {"room_type": "nft_gated", "access_nft_collection": str(member_nft)},
        "missing collection": {"room_type": "nft_gated", "access_nft_collection": str(Keypair().pubkey())},
    }
    for name, body in cases.items():
        refused = error(await create(http, owner, name=name, **body), 400)
        assert refused["code"] == "invalid_gate", name
    too_fine = error(await create(http, owner, **cases["finer than the decimals"]), 400)
    assert too_fine["details"]["decimals"] == 2
    malformed = error(await create(http, owner, room_type="token_gated", access_token_mint="0OIl" * 11,
                                   min_token_amount=1), 400)
    assert malformed["code"] == "validation_error"  # not base58: refused before the ledger is asked
    mine = await http.get("/api/v1/rooms", params={"mine": "true"}, headers=owner.user.headers)
    assert mine.json()["rooms"] == [], "no room was created for a bad gate"


async def test_ledger_down_fails_new_joins_closed_and_health_shows_it(
    http: httpx.AsyncClient, rpc: AsyncClient, payer: Keypair, chain: Chain
) -> None:
    owner, member, newcomer = [await person(http) for _ in range(3)]
    mint = await dev.create_mint(rpc, payer, 0)
    for who in (member, newcomer):
        await dev.mint_to(rpc, payer, mint, who.pubkey, 5)
    room = (await create(http, owner, room_type="token_gated", access_token_mint=str(mint),
                         min_token_amount=5)).json()
    public = (await create(http, owner, room_type="public")).json()
    assert (await join(http, member, room["id"])).status_code == 200
    healthy = (await health_detail(http)).json()
    assert healthy["components"]["solana"]["ok"] is True

    chain.process.stop()
    try:
        refused = error(await join(http, newcomer, room["id"]), 503)
        assert refused["code"] == "gating_unavailable"
        creating = error(await create(http, owner, room_type="nft_gated",
                                      access_nft_collection=str(mint)), 503)
        assert creating["code"] == "gating_unavailable"
        health = await health_detail(http)
        assert health.status_code == 503
        assert health.json()["components"]["solana"]["ok"] is False
        again = await join(http, member, room["id"])  # a member is confirmed without the ledger
        assert again.status_code == 200 and again.json()["role"] == "member"
        assert (await join(http, newcomer, public["id"])).status_code == 200
    finally:
        chain.restart()

    assert (await health_detail(http)).json()["components"]["solana"]["ok"] is True
    assert (await join(http, newcomer, room["id"])).status_code == 200, "the restarted ledger kept the mint"


async def test_a_member_who_transfers_their_nft_away_is_closed_4106_and_the_buyer_gets_in(
    http: httpx.AsyncClient, base_url: str, rpc: AsyncClient, payer: Keypair
) -> None:
    owner, seller, buyer = [await person(http) for _ in range(3)]
    collection = await dev.create_collection(rpc, payer, "Seminar", "SEM", "u")
    nft = await dev.mint_nft(rpc, payer, collection, seller.pubkey, "Seminar #1", "SEM", "u")
    room = (await create(http, owner, room_type="nft_gated", access_nft_collection=str(collection))).json()
    watching = await RoomClient.open(base_url, owner.user, room["id"])
    selling = await RoomClient.open(base_url, seller.user, room["id"])  # the handshake admits
    try:
        await watching.wait_for(lambda f: f["type"] == "user_joined")
        await dev.transfer(rpc, seller.keypair, nft, buyer.pubkey, 1, payer)
        moved = time.monotonic()
        assert await selling.closed_with(timeout=RECHECK_SECONDS + 10) == CloseCode.NO_LONGER_QUALIFIES
        assert time.monotonic() - moved < RECHECK_SECONDS + 3, "closed within the re-check interval"
        left = await watching.wait_for(lambda f: f["type"] == "user_left")
        assert (left["user_id"], left["reason"]) == (seller.user.user_id, "no_longer_qualifies")

        with pytest.raises(InvalidStatus) as refused:  # reconnecting is refused before accept
            async with connect(ws_url(base_url, room["id"]),
                               subprotocols=["roomserver.v1", f"bearer.{seller.user.token}"]):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 403
        assert orjson.loads(refused.value.response.body or b"{}")["error"]["code"] == "not_in_collection"
        buying = await RoomClient.open(base_url, buyer.user, room["id"])
        await buying.close()
    finally:
        await watching.close()
        await selling.close()
    participants = await http.get(f"/api/v1/rooms/{room['id']}/participants", headers=owner.user.headers)
    assert {p["user_id"] for p in participants.json()["participants"]} == {owner.user.user_id, buyer.user.user_id}
    recheck = (await health_detail(http)).json()["components"]["solana"]["detail"]["recheck"]
    assert recheck["removed"] >= 1


async def test_a_wallet_that_transferred_its_nft_away_loses_rest_access_after_the_interval(
    http: httpx.AsyncClient, rpc: AsyncClient, payer: Keypair
) -> None:
    owner, seller, buyer = [await person(http) for _ in range(3)]
    collection = await dev.create_collection(rpc, payer, "Archive", "ARC", "u")
    nft = await dev.mint_nft(rpc, payer, collection, seller.pubkey, "Archive #1", "ARC", "u")
    room = (await create(http, owner, room_type="nft_gated", access_nft_collection=str(collection))).json()
    assert (await join(http, seller, room["id"])).status_code == 200  # never opens a socket
    history = f"/api/v1/rooms/{room['id']}/messages"
    threads = f"/api/v1/rooms/{room['id']}/tutor/threads"
    assert (await http.get(history, headers=seller.user.headers)).status_code == 200
    await dev.transfer(rpc, seller.keypair, nft, buyer.pubkey, 1, payer)
    moved = time.monotonic()
    while (answer := await http.get(history, headers=seller.user.headers)).status_code == 200:
        assert time.monotonic() - moved < RECHECK_SECONDS + 5, "still reading the history"
        await asyncio.sleep(0.2)
    assert error(answer, 403)["code"] == "not_member"
    assert error(await http.get(threads, headers=seller.user.headers), 403)["code"] == "not_member"
    assert error(await join(http, seller, room["id"]), 403)["code"] == "not_in_collection"
    assert (await http.get(history, headers=owner.user.headers)).status_code == 200

"""Token and NFT gates against the real ledger over HTTP through the real solana client."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import httpx
import pytest
import redis.asyncio as aioredis
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.token import instructions as spl
from spl.token import models as splm
from spl.token.constants import TOKEN_PROGRAM_ID

from roomserver.chain import dev, metaplex
from roomserver.chain.rpc import ChainReader, RpcHealth
from roomserver.errors import BadRequest, Unavailable
from roomserver.gating.gatekeeper import Decision, Gate, Gatekeeper, MemoryGateCache, RedisGateCache
from roomserver.ledger.process import LedgerProcess
from roomserver.store.ports import free_port
from tests.fakes import FakeClock


@pytest.fixture
def keeper(rpc: AsyncClient) -> Gatekeeper:
    return Gatekeeper(ChainReader(rpc), MemoryGateCache(), ttl_seconds=30)


async def write_metadata(ledger: LedgerProcess, mint: Pubkey, collection: Pubkey | None, verified: bool,
                         name: str = "Study Pass") -> None:
    """Write a Metaplex metadata account for `mint` (no Metaplex program runs offline)."""
    meta = metaplex.Metadata(
        update_authority=str(Keypair().pubkey()), mint=str(mint), name=name, symbol="STUDY", uri="u",
        collection=None if collection is None else metaplex.Collection(verified, str(collection)),
    )
    spec = {"lamports": 5_616_720, "owner": str(metaplex.PROGRAM_ID),
            "data": [base64.b64encode(metaplex.encode_metadata(meta)).decode(), "base64"]}
    body = {"jsonrpc": "2.0", "id": 1, "method": "ledger_setAccount",
            "params": [str(metaplex.metadata_address(mint)), spec]}
    async with httpx.AsyncClient() as http:
        assert "error" not in (await http.post(ledger.url, json=body)).json()


# -- token gates ------------------------------------------------------------------------


async def test_enough_tokens_join_and_one_short_is_refused(rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper) -> None:
    mint = await dev.create_mint(rpc, payer, 2)
    holder, short = Keypair().pubkey(), Keypair().pubkey()
    await dev.mint_to(rpc, payer, mint, holder, 100_00)
    await dev.mint_to(rpc, payer, mint, short, 99_00)
    gate = Gate("token", str(mint), Decimal(100))
    assert (await keeper.check(str(holder), gate)).allowed
    refused = await keeper.check(str(short), gate)
    assert (refused.allowed, refused.code) == (False, "insufficient_holdings")
    assert refused.details["required"] == "100" and Decimal(refused.details["held"]) == Decimal(99)
    assert "at least 100" in refused.message


async def freezable_mint(rpc: AsyncClient, payer: Keypair, decimals: int) -> Pubkey:
    """A classic SPL mint whose mint and freeze authority is `payer`."""
    mint = Keypair()
    rent = (await rpc.get_minimum_balance_for_rent_exemption(82)).value
    await dev.send(rpc, payer, [
        create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=mint.pubkey(), lamports=rent,
                                           space=82, owner=TOKEN_PROGRAM_ID)),
        spl.initialize_mint2(splm.InitializeMint2Params(decimals=decimals, program_id=TOKEN_PROGRAM_ID,
                                                        mint=mint.pubkey(), mint_authority=payer.pubkey(),
                                                        freeze_authority=payer.pubkey())),
    ], [mint])
    return mint.pubkey()


async def test_a_frozen_token_account_does_not_count(rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper) -> None:
    mint = await freezable_mint(rpc, payer, 0)
    holder = Keypair().pubkey()
    account = await dev.mint_to(rpc, payer, mint, holder, 5)
    gate = Gate("token", str(mint), Decimal(5))
    assert (await keeper.check(str(holder), gate, use_cache=False)).allowed
    await dev.send(rpc, payer, [spl.freeze_account(splm.FreezeAccountParams(
        program_id=TOKEN_PROGRAM_ID, account=account, mint=mint, authority=payer.pubkey()))])
    frozen = await keeper.check(str(holder), gate, use_cache=False)
    assert (frozen.allowed, frozen.code, frozen.details["held"]) == (False, "insufficient_holdings", "0")


async def test_tokens_in_two_accounts_and_under_token_2022_count(rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper) -> None:
    for token_2022 in (False, True):
        mint = await dev.create_mint(rpc, payer, 6, token_2022=token_2022)
        wallet = Keypair().pubkey()
        await dev.mint_to(rpc, payer, mint, wallet, 60 * 10**6)
        second = await dev.create_token_account(rpc, payer, mint, wallet)
        await dev.mint_to_account(rpc, payer, mint, second, 40 * 10**6)
        assert (await keeper.check(str(wallet), Gate("token", str(mint), Decimal(100)))).allowed
        assert not (await keeper.check(str(wallet), Gate("token", str(mint), Decimal("100.000001")))).allowed


async def test_fractional_minimum_respects_decimals(rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper) -> None:
    mint = await dev.create_mint(rpc, payer, 3, token_2022=True)
    wallet = Keypair().pubkey()
    await dev.mint_to(rpc, payer, mint, wallet, 2_500)
    assert (await keeper.check(str(wallet), Gate("token", str(mint), Decimal("2.5")))).allowed
    assert not (await keeper.check(str(wallet), Gate("token", str(mint), Decimal("2.501")))).allowed


# -- NFT gates --------------------------------------------------------------------------


async def test_collection_member_joins_and_lookalike_is_refused(rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper) -> None:
    collection = await dev.create_collection(rpc, payer, "Club", "CLUB", "u")
    copycat = await dev.create_collection(rpc, payer, "Club", "CLUB", "u")
    member, faker = Keypair().pubkey(), Keypair().pubkey()
    await dev.mint_nft(rpc, payer, collection, member, "Club #1", "CLUB", "u")
    await dev.mint_nft(rpc, payer, copycat, faker, "Club #1", "CLUB", "u")
    gate = Gate("nft", str(collection))
    allowed = await keeper.check(str(member), gate)
    assert allowed.allowed and allowed.details["collection"] == str(collection)
    refused = await keeper.check(str(faker), gate)
    assert (refused.allowed, refused.code) == (False, "not_in_collection")


async def test_metaplex_verified_collection_counts_and_unverified_is_refused(
    ledger: LedgerProcess, rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper
) -> None:
    collection = await dev.create_mint(rpc, payer, 0)
    verified_owner, unverified_owner = Keypair().pubkey(), Keypair().pubkey()
    for owner, verified in ((verified_owner, True), (unverified_owner, False)):
        nft = await dev.create_mint(rpc, payer, 0)
        await dev.mint_to(rpc, payer, nft, owner, 1)
        await write_metadata(ledger, nft, collection, verified)
    gate = Gate("nft", str(collection))
    assert (await keeper.check(str(verified_owner), gate)).allowed
    assert (await keeper.check(str(unverified_owner), gate)).code == "not_in_collection"


async def test_fungible_lookalikes_of_a_collection_are_refused(
    ledger: LedgerProcess, rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper
) -> None:
    collection = await dev.create_mint(rpc, payer, 0)
    gate = Gate("nft", str(collection))
    with_decimals, with_supply = Keypair().pubkey(), Keypair().pubkey()
    decimal_mint = await dev.create_mint(rpc, payer, 2)  # holds 1 raw unit: 0.01 tokens
    await dev.mint_to(rpc, payer, decimal_mint, with_decimals, 1)
    await write_metadata(ledger, decimal_mint, collection, True)
    supply_mint = await dev.create_mint(rpc, payer, 0)  # supply 2: one each for two wallets
    await dev.mint_to(rpc, payer, supply_mint, with_supply, 1)
    await dev.mint_to(rpc, payer, supply_mint, Keypair().pubkey(), 1)
    await write_metadata(ledger, supply_mint, collection, True)
    assert (await keeper.check(str(with_decimals), gate)).code == "not_in_collection"
    assert (await keeper.check(str(with_supply), gate)).code == "not_in_collection"


async def test_transferred_nft_moves_the_right_to_join(rpc: AsyncClient, payer: Keypair) -> None:
    clock = FakeClock()
    keeper = Gatekeeper(ChainReader(rpc), MemoryGateCache(clock), ttl_seconds=30)
    collection = await dev.create_collection(rpc, payer, "Pass", "PASS", "u")
    seller, buyer = Keypair(), str(Keypair().pubkey())
    nft = await dev.mint_nft(rpc, payer, collection, seller.pubkey(), "Pass #1", "PASS", "u")
    gate = Gate("nft", str(collection))
    assert (await keeper.check(str(seller.pubkey()), gate)).allowed
    assert not (await keeper.check(buyer, gate)).allowed
    await dev.transfer(rpc, seller, nft, Pubkey.from_string(buyer), 1, payer)
    assert (await keeper.check(str(seller.pubkey()), gate)).allowed  # cached within the TTL
    assert not (await keeper.check(str(seller.pubkey()), gate, use_cache=False)).allowed
    clock.now += 31
    assert not (await keeper.check(str(seller.pubkey()), gate)).allowed
    assert (await keeper.check(str(buyer), gate)).allowed


# -- failures and validation --------------------------------------------------------------


async def test_health_recovers_with_the_rpc(rpc: AsyncClient) -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as dead:
        health = RpcHealth()  # one flag shared by both readers, as siblings share it
        with pytest.raises(Unavailable):
            await Gatekeeper(ChainReader(dead, timeout_seconds=5, health=health), MemoryGateCache()).check(
                str(Keypair().pubkey()), Gate("nft", str(Keypair().pubkey())))
    keeper = Gatekeeper(ChainReader(rpc, health=health), MemoryGateCache())
    assert keeper.rpc_healthy is False
    await keeper.check(str(Keypair().pubkey()), Gate("nft", str(Keypair().pubkey())))
    assert keeper.rpc_healthy is True


async def test_validate_gate(ledger: LedgerProcess, rpc: AsyncClient, payer: Keypair, keeper: Gatekeeper) -> None:
    mint = await dev.create_mint(rpc, payer, 2)
    collection = await dev.create_collection(rpc, payer, "Valid", "VAL", "u")
    metaplex_collection = await dev.create_mint(rpc, payer, 0)
    await write_metadata(ledger, metaplex_collection, None, False, name="A Metaplex collection")
    await keeper.validate_gate(Gate("token", str(mint), Decimal("0.5")))
    await keeper.validate_gate(Gate("nft", str(collection)))
    await keeper.validate_gate(Gate("nft", str(metaplex_collection)))
    bad = [
        Gate("token", "not-base58-0OIl", Decimal(1)),
        Gate("token", str(Keypair().pubkey()), Decimal(1)),  # does not exist
        Gate("token", str(payer.pubkey()), Decimal(1)),  # a wallet, not a mint
        Gate("token", str(mint), Decimal("0.001")),  # more decimals than the mint
        Gate("token", str(mint), Decimal(0)),
        Gate("token", str(mint), None),
        Gate("token", str(mint), Decimal("1e30")),
        Gate("nft", str(mint)),  # a plain mint is no collection
    ]
    for gate in bad:
        with pytest.raises(BadRequest) as caught:
            await keeper.validate_gate(gate)
        assert caught.value.code == "invalid_gate", gate


async def test_bad_wallet_is_a_typed_error(keeper: Gatekeeper) -> None:
    with pytest.raises(BadRequest, match="wallet") as caught:
        await keeper.check("0OIl", Gate("nft", str(Keypair().pubkey())))
    assert caught.value.code == "invalid_wallet"


# -- caches -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server, "redis-server must be installed for the Redis cache test"
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    for _ in range(100):
        try:
            await client.ping()
            break
        except aioredis.ConnectionError:
            await asyncio.sleep(0.05)
    yield client
    await client.aclose()


async def test_redis_cache_shares_decisions_and_expires(redis_client: aioredis.Redis) -> None:
    node_a, node_b = RedisGateCache(redis_client), RedisGateCache(redis_client)
    decision = Decision(False, "insufficient_holdings", "short", {"held": "99", "decimals": 2})
    await node_a.set("token:x:100:w", decision, 0.2)
    assert await node_b.get("token:x:100:w") == decision
    await asyncio.sleep(0.3)
    assert await node_b.get("token:x:100:w") is None

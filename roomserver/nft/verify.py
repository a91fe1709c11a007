"""Confirmation checks: does the ledger hold exactly the mint the server promised?

`check_mint` compares a `Promise` with the mint and the owner's associated token account as the
ledger holds them now (a list of differences, empty when they agree); `await_confirmed` waits
for a signature to reach `confirmed`; `collection_of` / `member_of` read room collections and
their members back from the mint accounts. Nothing here writes anything.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from solders.account import Account
from solders.pubkey import Pubkey
from solders.signature import Signature
from spl.token import instructions as spl

from roomserver import errors
from roomserver.chain.rpc import ChainReader
from roomserver.chain.spl_token import (
    GROUP_MEMBER_POINTER,
    GROUP_POINTER,
    METADATA_POINTER,
    TOKEN_2022_PROGRAM,
    TOKEN_GROUP,
    TOKEN_GROUP_MEMBER,
    TOKEN_METADATA,
    LayoutError,
    Mint,
    decode_account,
    decode_mint,
)
from roomserver.nft.models import Collection, CollectionMember

log = logging.getLogger(__name__)

T22 = Pubkey.from_string(TOKEN_2022_PROGRAM)
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Promise:
    """What a mint must look like on the ledger once its transaction has run."""

    mint: str
    owner: str
    name: str
    symbol: str
    uri: str
    update_authority: str
    collection: str | None  # member of; None for a collection itself


async def check_mint(chain: ChainReader, promise: Promise) -> list[str]:
    """Differences between the ledger and `promise`; empty when they agree."""
    mint_key, owner = Pubkey.from_string(promise.mint), Pubkey.from_string(promise.owner)
    ata = spl.get_associated_token_address(owner, mint_key, T22)
    mint_account, ata_account = await chain.accounts([mint_key, ata])
    if mint_account is None or str(mint_account.owner) != TOKEN_2022_PROGRAM:
        return ["no Token-2022 mint at this address"]
    try:
        mint = decode_mint(bytes(mint_account.data))
    except LayoutError:
        return ["the account is not a mint"]
    problems = mint_problems(mint, promise)
    try:
        held = decode_account(bytes(ata_account.data)) if ata_account is not None else None
    except LayoutError:
        held = None
    if held is None or held.owner != promise.owner or held.mint != promise.mint or held.amount != 1:
        problems.append("the owner's associated token account does not hold the token")
    return problems


async def await_confirmed(chain: ChainReader, sig: Signature, within: float) -> None:
    """Return once `sig` is confirmed (or finalized). Raises transaction_failed (it ran and
    failed; the ledger's error is logged, not returned) or transaction_pending (not yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        status = (await chain.call(chain.client.get_signature_statuses([sig]))).value[0]
        if status is not None and status.err is not None:
            log.info("mint transaction %s failed on the ledger: %s", sig, str(status.err)[:300])
            raise errors.BadRequest("the mint transaction failed on the ledger", code="transaction_failed",
                                    details={"signature": str(sig), "reason": "failed_on_ledger"})
        if status is not None and status.confirmation_status is not None and \
                str(status.confirmation_status).lower().endswith(("confirmed", "finalized")):
            return
        if loop.time() >= deadline:
            raise errors.Conflict("the transaction is not confirmed on the ledger yet; retry",
                                  code="transaction_pending", details={"signature": str(sig)})
        await asyncio.sleep(POLL_SECONDS)


def extension_state(mint: Mint, kind: int) -> dict[str, Any]:
    ext = mint.extension(kind)
    return (ext.state or {}) if ext is not None else {}


def mint_problems(mint: Mint, promise: Promise) -> list[str]:
    """What differs between a decoded mint and the promise (the token account aside)."""
    problems = []
    if mint.decimals != 0 or mint.supply != 1:
        problems.append("not decimals 0 with supply 1")
    if mint.mint_authority is not None:
        problems.append("the mint authority was not removed")
    if extension_state(mint, METADATA_POINTER).get("metadataAddress") != promise.mint:
        problems.append("the metadata pointer does not point at the mint")
    meta = extension_state(mint, TOKEN_METADATA)
    expected = {"mint": promise.mint, "name": promise.name, "symbol": promise.symbol, "uri": promise.uri,
                "updateAuthority": promise.update_authority}
    problems += [f"metadata {k} differs" for k, v in expected.items() if meta.get(k) != v]
    if promise.collection is None:
        group = extension_state(mint, TOKEN_GROUP)
        if extension_state(mint, GROUP_POINTER).get("groupAddress") != promise.mint or group.get("mint") != promise.mint:
            problems.append("not a token group")
        elif group.get("updateAuthority") != promise.update_authority:
            problems.append("the group update authority differs")
    else:
        member = extension_state(mint, TOKEN_GROUP_MEMBER)
        if extension_state(mint, GROUP_MEMBER_POINTER).get("memberAddress") != promise.mint or \
                member.get("mint") != promise.mint or member.get("group") != promise.collection:
            problems.append("not a member of the collection")
    return problems


def decoded_mint(account: Account | None) -> Mint | None:
    """The Token-2022 mint in `account`, or None."""
    if account is None or str(account.owner) != TOKEN_2022_PROGRAM:
        return None
    try:
        return decode_mint(bytes(account.data))
    except LayoutError:
        return None


def collection_of(address: str, account: Account | None) -> Collection | None:
    """The collection (a token group on its own mint) at `address`, or None."""
    mint = decoded_mint(account)
    group = extension_state(mint, TOKEN_GROUP) if mint else {}
    if mint is None or group.get("mint") != address:
        return None
    meta = extension_state(mint, TOKEN_METADATA)
    return Collection(mint=address, name=meta.get("name", ""), symbol=meta.get("symbol", ""), uri=meta.get("uri", ""),
                      size=group["size"], max_size=group["maxSize"], update_authority=group.get("updateAuthority"),
                      room_id=None, room_name=None)


def member_of(row: asyncpg.Record, account: Account | None, collection: str) -> CollectionMember | None:
    """The indexed highlight NFT `row` as the ledger holds it, if it is a member of `collection`."""
    mint = decoded_mint(account)
    if mint is None:
        return None
    member = extension_state(mint, TOKEN_GROUP_MEMBER)
    if member.get("group") != collection or member.get("mint") != row["mint_address"]:
        return None
    meta = extension_state(mint, TOKEN_METADATA)
    return CollectionMember(mint=row["mint_address"], member_number=member["memberNumber"], name=meta.get("name", ""),
                            symbol=meta.get("symbol", ""), uri=meta.get("uri", ""),
                            additional_metadata=meta.get("additionalMetadata", []),
                            highlight_id=row["highlight_id"], minted_to=row["owner_wallet"])

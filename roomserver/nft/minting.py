"""Minting highlights and rooms as Token-2022 NFTs, and reading collections back from the ledger.

A room's collection is a Token-2022 mint with MetadataPointer + TokenMetadata and GroupPointer
+ TokenGroup (all pointing at the mint itself), one token of it held by the room's owner. A
highlight NFT is a Token-2022 mint with MetadataPointer + TokenMetadata and GroupMemberPointer +
TokenGroupMember of its room's collection, one token held by the highlight's author. Both have
decimals 0, supply 1 and no mint authority; the server's collection authority is the metadata
and group update authority. The metadata URI names a JSON document in the blob store
(`{origin}/ipfs/{cid}`), whose image is an SVG card stored beside it.

Two modes:
    wallet     the server builds the transaction, signs with the new mint and (for members) the
               collection authority, and hands it back for the user's wallet to sign as fee
               payer and send; `confirm(signature)` then checks the ledger and records it.
    sponsored  the server's fee payer signs and sends, and the mint is recorded at once.

Sponsored mints are limited before anything is signed (roomserver.nft.quota: per user per UTC
day, per deployment per UTC day, a daily lamport budget; room mints wait for the room to age).

The ledger is read through the one `ChainReader` (roomserver.chain.rpc; failures are 503
`nft_ledger_unavailable`), the confirmation checks live in roomserver.nft.verify, the REST
models in roomserver.nft.models. The rooms table is written only through `RoomCollections`
(the RoomService), highlights not at all; room announcements go through `announce`.

Every step is idempotent: one live intent per highlight / room (a unique index), a retried
mint request returns the same unexpired transaction, a retried confirmation returns the same
record. The ledger is the source of truth: nothing is recorded until the mint is there exactly
as promised.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import asyncpg
from solana.rpc.commitment import Confirmed
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import VersionedTransaction
from spl.token import instructions as spl
from spl.token import models as splm
from spl.token.models import AuthorityType

from roomserver import errors
from roomserver.chain import token2022
from roomserver.chain.keys import ServerKeys, load_server_keys
from roomserver.chain.rpc import ChainReader
from roomserver.config import Settings
from roomserver.nft import card as nft_card
from roomserver.nft import quota
from roomserver.nft.models import Collection, CollectionDetail, Kind, MintResult, Mode
from roomserver.nft.quota import SponsorLimits
from roomserver.nft.verify import (
    T22,
    Promise,
    await_confirmed,
    check_mint,
    collection_of,
    member_of,
)
from roomserver.observe.metrics import Metrics
from roomserver.store.blobstore import BlobStore

log = logging.getLogger(__name__)

UNAVAILABLE = "nft_ledger_unavailable"
COLLECTION_MAX_SIZE = 1_000_000
LAMPORTS_PER_SOL = 10**9
ATA_SPACE = 170  # a Token-2022 token account with the ImmutableOwner extension
SIGNATURE_FEE = 5000  # lamports per signature

Announce = Callable[[uuid.UUID, str, dict[str, Any]], Awaitable[None]]
"""announce(room_id, text, metadata): append a durable system message to a room."""


class RoomCollections(Protocol):
    """The rooms service's side of minting: record a room's collection in the caller's transaction."""

    async def record_collection(self, conn: asyncpg.Connection, room_id: uuid.UUID, mint: str,
                                metadata_uri: str) -> None: ...


class NftService:
    """Minting and collections over one pool, one chain reader and one blob store."""

    def __init__(self, pool: asyncpg.Pool, chain: ChainReader, blobs: BlobStore, keys: ServerKeys | None,
                 *, origin: str, rooms: RoomCollections, mode: Mode = "wallet", local_ledger: bool = False,
                 announce: Announce | None = None, confirm_timeout: float = 15.0,
                 limits: SponsorLimits | None = None, metrics: Metrics | None = None):
        self.pool, self.chain, self.blobs, self.keys = pool, chain.with_code(UNAVAILABLE), blobs, keys
        self._mints = (metrics or Metrics.unexposed()).nft_mints
        self.origin, self.rooms, self.mode, self.local_ledger = origin.rstrip("/"), rooms, mode, local_ledger
        self.announce, self.confirm_timeout = announce, confirm_timeout
        self.limits = limits or SponsorLimits()
        self._ata_rent: int | None = None

    async def fee_payer_balance(self) -> int | None:
        """Lamports the sponsor (fee payer) holds now; None without server keys. For operators
        (health detail, alerts): sponsored minting stops when it runs dry. Raises Unavailable."""
        if self.keys is None:
            return None
        return await self.chain.balance(self.keys.fee_payer.pubkey)

    def _keys(self) -> ServerKeys:
        if self.keys is None:
            raise errors.Unavailable("minting is not configured on this server (no server keypairs)",
                                     code="nft_unavailable")
        return self.keys

    # -- metadata ---------------------------------------------------------------------------

    def uri(self, cid: str) -> str:
        return f"{self.origin}/ipfs/{cid}"

    async def _store_metadata(self, image: bytes, metadata: Callable[[str], bytes]) -> tuple[str, str]:
        image_cid = await self.blobs.put(image, "image/svg+xml")
        cid = await self.blobs.put(metadata(self.uri(image_cid)), "application/json")
        return self.uri(cid), cid

    # -- subjects ---------------------------------------------------------------------------

    async def _highlight(self, highlight_id: uuid.UUID, user_id: uuid.UUID) -> tuple[nft_card.HighlightFacts, str]:
        row = await self.pool.fetchrow(
            """SELECT h.id, h.user_id, h.text, h.context_before, h.context_after, h.page, h.room_id,
                      d.id AS document_id, d.title, r.name AS room_name, r.room_nft_mint, u.wallet_address
               FROM highlights h JOIN documents d ON d.id = h.document_id
               JOIN users u ON u.id = h.user_id
               LEFT JOIN study_rooms r ON r.id = h.room_id
               WHERE h.id = $1""", highlight_id)
        if row is None:
            raise errors.NotFound("no such highlight", code="highlight_not_found",
                                  details={"highlight_id": str(highlight_id)})
        if row["user_id"] != user_id:
            raise errors.Forbidden("only the highlight's author can mint it", code="not_highlight_author",
                                   details={"highlight_id": str(highlight_id)})
        if row["room_id"] is None:
            raise errors.Conflict("the highlight belongs to no room, so it has no collection",
                                  code="highlight_not_in_room", details={"highlight_id": str(highlight_id)})
        if row["room_nft_mint"] is None:
            raise errors.Conflict("the room has no collection yet: its owner mints the room first",
                                  code="room_collection_missing", details={"room_id": str(row["room_id"])})
        facts = nft_card.HighlightFacts(
            highlight_id=str(row["id"]), text=row["text"], context_before=row["context_before"],
            context_after=row["context_after"], page=row["page"], document_id=str(row["document_id"]),
            document_title=row["title"], room_id=str(row["room_id"]), room_name=row["room_name"],
            author_wallet=row["wallet_address"],
        )
        return facts, row["room_nft_mint"]

    async def _room(self, room_id: uuid.UUID, user_id: uuid.UUID) -> nft_card.RoomFacts:
        row = await self.pool.fetchrow(
            """SELECT r.id, r.name, r.description, r.topic, r.owner_id, r.room_nft_mint, r.created_at,
                      now() AS now, u.wallet_address
               FROM study_rooms r JOIN users u ON u.id = r.owner_id WHERE r.id = $1""", room_id)
        if row is None:
            raise errors.NotFound("no such room", code="room_not_found", details={"room_id": str(room_id)})
        if row["owner_id"] != user_id:
            raise errors.Forbidden("only the room's owner can mint the room", code="not_room_owner",
                                   details={"room_id": str(room_id)})
        if row["room_nft_mint"] is not None:
            raise _already_minted("room", row["room_nft_mint"])
        if self.mode == "sponsored":
            quota.check_room_age(self.limits, row["created_at"], row["now"])
        return nft_card.RoomFacts(room_id=str(row["id"]), name=row["name"], description=row["description"],
                                  topic=row["topic"], owner_wallet=row["wallet_address"])

    # -- minting ----------------------------------------------------------------------------

    async def _counted(self, work: Awaitable[MintResult]) -> MintResult:
        """`work`'s result, counted in `roomserver_nft_mints_total` by mode and result: the
        mint's status (`pending`, `confirmed`), `refused` (a typed 4xx) or `failed`."""
        try:
            result = await work
        except errors.RoomserverError as exc:
            self._mints.labels(self.mode, "refused" if exc.status < 500 else "failed").inc()
            raise
        except Exception:
            self._mints.labels(self.mode, "failed").inc()
            raise
        self._mints.labels(self.mode, result.status).inc()
        return result

    async def mint_highlight(self, highlight_id: uuid.UUID, user_id: uuid.UUID, wallet: str) -> MintResult:
        """Raises highlight_not_found, not_highlight_author, highlight_not_in_room,
        room_collection_missing, already_minted, nft_unavailable, mint_quota_exceeded."""
        return await self._counted(self._mint_highlight(highlight_id, user_id, wallet))

    async def _mint_highlight(self, highlight_id: uuid.UUID, user_id: uuid.UUID, wallet: str) -> MintResult:
        keys = self._keys()
        facts, collection = await self._highlight(highlight_id, user_id)
        if (resumed := await self._resume("highlight", highlight_id, wallet)) is not None:
            return resumed
        await self._precheck_quota(user_id)
        uri, cid = await self._store_metadata(
            nft_card.highlight_svg(facts), lambda image: nft_card.highlight_metadata(facts, image))
        promise = Promise(mint="", owner=wallet, name=nft_card.highlight_name(facts),
                          symbol=nft_card.HIGHLIGHT_SYMBOL, uri=uri,
                          update_authority=str(keys.collection_authority.pubkey), collection=collection)
        return await self._start("highlight", highlight_id, user_id, promise, cid)

    async def mint_room(self, room_id: uuid.UUID, user_id: uuid.UUID, wallet: str) -> MintResult:
        """Raises room_not_found, not_room_owner, already_minted, nft_unavailable, and in
        sponsored mode room_too_new and mint_quota_exceeded."""
        return await self._counted(self._mint_room(room_id, user_id, wallet))

    async def _mint_room(self, room_id: uuid.UUID, user_id: uuid.UUID, wallet: str) -> MintResult:
        keys = self._keys()
        facts = await self._room(room_id, user_id)
        if (resumed := await self._resume("room", room_id, wallet)) is not None:
            return resumed
        await self._precheck_quota(user_id)
        uri, cid = await self._store_metadata(
            nft_card.room_svg(facts), lambda image: nft_card.room_metadata(facts, image))
        promise = Promise(mint="", owner=wallet, name=nft_card.room_name(facts), symbol=nft_card.ROOM_SYMBOL,
                          uri=uri, update_authority=str(keys.collection_authority.pubkey), collection=None)
        return await self._start("room", room_id, user_id, promise, cid)

    async def _precheck_quota(self, user_id: uuid.UUID) -> None:
        """Refuse an over-quota sponsored mint before any metadata is stored or RPC asked
        (the authoritative check runs again, locked, when the intent is inserted)."""
        if self.mode == "sponsored":
            async with self.pool.acquire() as conn:
                await quota.reserve(conn, self.limits, user_id, 0)

    async def _start(self, kind: Kind, subject: uuid.UUID, user_id: uuid.UUID, promise: Promise,
                     cid: str) -> MintResult:
        keys = self._keys()
        mint = Keypair()
        sponsored = self.mode == "sponsored"
        payer = keys.fee_payer.pubkey if sponsored else Pubkey.from_string(promise.owner)
        if sponsored:
            await self._fund(payer)
        latest = (await self.chain.call(self.chain.client.get_latest_blockhash(Confirmed))).value
        promise = dataclasses.replace(promise, mint=str(mint.pubkey()))
        message, rent = await self._message(payer, mint.pubkey(), promise, latest.blockhash)
        cost = rent + await self._ata_rent_lamports() + SIGNATURE_FEE * message.header.num_required_signatures
        signers = [mint] + ([keys.collection_authority.keypair()] if promise.collection else [])
        if sponsored:
            signers.append(keys.fee_payer.keypair())
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if sponsored:  # checked under the lock before the fee payer signs
                    await quota.reserve(conn, self.limits, user_id, cost)
                tx = _sign(message, signers)
                row = await conn.fetchrow(
                    """INSERT INTO nft_mint_intents (kind, subject_id, user_id, owner_wallet, fee_payer, mode,
                           mint_address, collection_mint, name, symbol, metadata_uri, metadata_cid, message,
                           transaction, blockhash, last_valid_block_height, sponsor_lamports)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                       RETURNING *""",
                    kind, subject, user_id, promise.owner, str(payer), self.mode, promise.mint, promise.collection,
                    promise.name, promise.symbol, promise.uri, cid, to_bytes_versioned(message),
                    base64.b64encode(bytes(tx)).decode(), str(latest.blockhash), latest.last_valid_block_height,
                    cost if sponsored else 0)
        except asyncpg.UniqueViolationError:  # a concurrent request for the same subject won
            resumed = await self._resume(kind, subject, promise.owner)
            if resumed is None:
                raise errors.Conflict("a mint of this is already in progress", code="mint_in_progress") from None
            return resumed
        if sponsored:
            return await self._send_and_record(row, tx)
        return _result(row)

    async def _ata_rent_lamports(self) -> int:
        if self._ata_rent is None:
            self._ata_rent = (await self.chain.call(
                self.chain.client.get_minimum_balance_for_rent_exemption(ATA_SPACE))).value
        return self._ata_rent

    async def _message(self, payer: Pubkey, mint: Pubkey, promise: Promise,
                       blockhash: Hash) -> tuple[Message, int]:
        """The mint transaction's message and the rent it pays for the mint account."""
        authority = Pubkey.from_string(promise.update_authority)
        owner = Pubkey.from_string(promise.owner)
        if promise.collection is None:
            pointer = token2022.initialize_group_pointer(mint, authority, mint)
            grouping = token2022.initialize_token_group(mint, mint, mint, authority, COLLECTION_MAX_SIZE)
            extra = token2022.GROUP_SIZE
        else:
            pointer = token2022.initialize_group_member_pointer(mint, authority, mint)
            grouping = token2022.initialize_member(mint, mint, mint, Pubkey.from_string(promise.collection), authority)
            extra = token2022.MEMBER_SIZE
        space = token2022.mint_space(2)
        extra += token2022.metadata_size(promise.name, promise.symbol, promise.uri)
        rent = (await self.chain.call(self.chain.client.get_minimum_balance_for_rent_exemption(space + extra))).value
        ata = spl.get_associated_token_address(owner, mint, T22)
        instructions: list[Instruction] = [
            create_account(CreateAccountParams(from_pubkey=payer, to_pubkey=mint, lamports=rent,
                                               space=space, owner=T22)),
            token2022.initialize_metadata_pointer(mint, authority, mint),
            pointer,
            spl.initialize_mint2(splm.InitializeMint2Params(decimals=0, program_id=T22, mint=mint,
                                                            mint_authority=mint)),
            token2022.initialize_token_metadata(mint, authority, mint, mint, promise.name, promise.symbol,
                                                promise.uri),
            grouping,
            spl.create_idempotent_associated_token_account(payer, owner, mint, T22),
            spl.mint_to_checked(splm.MintToCheckedParams(program_id=T22, mint=mint, dest=ata,
                                                         mint_authority=mint, amount=1, decimals=0)),
            spl.set_authority(splm.SetAuthorityParams(program_id=T22, account=mint,
                                                      authority=AuthorityType.MINT_TOKENS,
                                                      current_authority=mint, new_authority=None)),
        ]
        return Message.new_with_blockhash(instructions, payer, blockhash), rent

    async def _fund(self, payer: Pubkey) -> None:
        """On the local ledger, top up the sponsor from the faucet; elsewhere the operator does."""
        if not self.local_ledger:
            return
        if await self.chain.balance(payer) < LAMPORTS_PER_SOL:
            client = self.chain.client
            signature = (await self.chain.call(client.request_airdrop(payer, 10 * LAMPORTS_PER_SOL, Confirmed))).value
            await self.chain.call(client.confirm_transaction(signature, Confirmed))

    async def _resume(self, kind: Kind, subject: uuid.UUID, wallet: str) -> MintResult | None:
        """The live intent for `subject`, if any: its result when it may still be used; raises
        already_minted when it is done (recording a mint that landed unconfirmed); None after
        abandoning an expired one."""
        row = await self.pool.fetchrow(
            "SELECT * FROM nft_mint_intents WHERE kind = $1 AND subject_id = $2 AND status IN ('pending', 'confirmed')",
            kind, subject)
        if row is None:
            return None
        if row["status"] == "confirmed":
            raise _already_minted(kind, row["mint_address"])
        (account,) = await self.chain.accounts([Pubkey.from_string(row["mint_address"])])
        if account is not None:  # the transaction ran but was never confirmed with us
            await self._verify(row)
            await self._record(row, None)
            raise _already_minted(kind, row["mint_address"])
        height = (await self.chain.call(self.chain.client.get_block_height(Confirmed))).value
        valid = height <= row["last_valid_block_height"]
        if valid and row["owner_wallet"] == wallet and row["mode"] == self.mode:
            if row["mode"] == "sponsored":
                return await self._send_and_record(row, VersionedTransaction.from_bytes(base64.b64decode(row["transaction"])))
            return _result(row)
        await self.pool.execute("UPDATE nft_mint_intents SET status = 'abandoned' WHERE id = $1 AND status = 'pending'",
                                row["id"])
        return None

    async def _send_and_record(self, row: asyncpg.Record, tx: VersionedTransaction) -> MintResult:
        signature = await self.chain.send(tx, confirm_timeout=self.confirm_timeout)
        await self._verify(row)
        return await self._record(row, signature)

    # -- confirmation -----------------------------------------------------------------------

    async def confirm(self, signature: str, user_id: uuid.UUID) -> MintResult:
        """Record the mint whose transaction `signature` is (the wallet's fee-payer signature).

        Raises invalid_signature (not a signature), unknown_transaction (not a mint this server
        built for this user), transaction_pending (not confirmed on the ledger yet: retry),
        transaction_failed, mint_mismatch (the ledger does not hold what was promised)."""
        return await self._counted(self._confirm(signature, user_id))

    async def _confirm(self, signature: str, user_id: uuid.UUID) -> MintResult:
        try:
            sig = Signature.from_string(signature)
        except (ValueError, TypeError):
            raise errors.BadRequest("not a base58 transaction signature", code="invalid_signature") from None
        done = await self.pool.fetchrow(
            "SELECT * FROM nft_mint_intents WHERE tx_signature = $1 AND user_id = $2", str(sig), user_id)
        if done is not None and done["status"] == "confirmed":
            return _result(done)
        pending = await self.pool.fetch(
            "SELECT * FROM nft_mint_intents WHERE user_id = $1 AND status = 'pending' AND mode = 'wallet'", user_id)
        row = next((r for r in pending
                    if sig.verify(Pubkey.from_string(r["fee_payer"]), bytes(r["message"]))), None)
        if row is None:
            raise errors.BadRequest("this signature is not of a mint transaction the server built for you",
                                    code="unknown_transaction", details={"signature": str(sig)})
        await await_confirmed(self.chain, sig, self.confirm_timeout)
        await self._verify(row)
        return await self._record(row, str(sig))

    async def _verify(self, row: asyncpg.Record) -> None:
        promise = Promise(mint=row["mint_address"], owner=row["owner_wallet"], name=row["name"],
                          symbol=row["symbol"], uri=row["metadata_uri"],
                          update_authority=str(self._keys().collection_authority.pubkey),
                          collection=row["collection_mint"] if row["kind"] == "highlight" else None)
        problems = await check_mint(self.chain, promise)
        if problems:
            raise errors.Conflict("the mint on the ledger is not the one promised", code="mint_mismatch",
                                  details={"mint": promise.mint, "problems": problems})

    async def _record(self, row: asyncpg.Record, signature: str | None) -> MintResult:
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchrow(
                """UPDATE nft_mint_intents SET status = 'confirmed', confirmed_at = now(),
                          tx_signature = COALESCE($2, tx_signature)
                   WHERE id = $1 AND status = 'pending' RETURNING *""", row["id"], signature)
            if updated is None:  # a concurrent confirmation recorded it
                current = await conn.fetchrow("SELECT * FROM nft_mint_intents WHERE id = $1", row["id"])
                return _result(current)
            if row["kind"] == "highlight":
                await conn.execute(
                    """INSERT INTO nft_highlights (highlight_id, mint_address, owner_wallet, collection_mint,
                           metadata_uri, metadata_cid, tx_signature, status, confirmed_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, 'confirmed', now())""",
                    row["subject_id"], row["mint_address"], row["owner_wallet"], row["collection_mint"],
                    row["metadata_uri"], row["metadata_cid"], signature)
                room_id = await conn.fetchval("SELECT room_id FROM highlights WHERE id = $1", row["subject_id"])
            else:
                await self.rooms.record_collection(conn, row["subject_id"], row["mint_address"],
                                                   row["metadata_uri"])
                room_id = None
        if room_id is not None:
            await self._announce(room_id, updated)
        return _result(updated)

    async def _announce(self, room_id: uuid.UUID, row: asyncpg.Record) -> None:
        if self.announce is None:
            return
        text = f"A highlight was minted as an NFT: {row['name']} ({row['mint_address']})"
        metadata = {"kind": "nft_minted", "mint": row["mint_address"], "highlight_id": str(row["subject_id"]),
                    "owner": row["owner_wallet"], "metadata_uri": row["metadata_uri"]}
        try:
            await self.announce(room_id, text, metadata)
        except Exception:  # the mint is recorded either way; the announcement is best effort
            log.exception("could not announce mint %s in room %s", row["mint_address"], room_id)

    # -- collections ------------------------------------------------------------------------

    async def collections(self) -> list[Collection]:
        """Every room collection the server knows, as the ledger has it now."""
        rows = await self.pool.fetch(
            "SELECT id, name, room_nft_mint FROM study_rooms WHERE room_nft_mint IS NOT NULL ORDER BY created_at, id")
        accounts = await self.chain.accounts([Pubkey.from_string(r["room_nft_mint"]) for r in rows])
        out = []
        for row, account in zip(rows, accounts, strict=True):
            collection = collection_of(row["room_nft_mint"], account)
            if collection is None:
                log.warning("room %s names collection %s, which the ledger does not hold", row["id"], row["room_nft_mint"])
                continue
            out.append(collection.model_copy(update={"room_id": row["id"], "room_name": row["name"]}))
        return out

    async def collection(self, address: str) -> CollectionDetail:
        """One collection and its members (candidates from the index, verified on the ledger).
        Raises invalid_mint, collection_not_found."""
        try:
            if not 32 <= len(address) <= 44:
                raise ValueError(address)
            key = Pubkey.from_string(address)
        except ValueError:
            raise errors.BadRequest("not a base58 mint address", code="invalid_mint",
                                    details={"mint": address[:64]}) from None
        (account,) = await self.chain.accounts([key])
        collection = collection_of(address, account)
        if collection is None:
            raise errors.NotFound("no Token-2022 collection at this address", code="collection_not_found",
                                  details={"mint": address})
        room = await self.pool.fetchrow("SELECT id, name FROM study_rooms WHERE room_nft_mint = $1", address)
        indexed = await self.pool.fetch(
            "SELECT highlight_id, mint_address, owner_wallet FROM nft_highlights WHERE collection_mint = $1", address)
        member_accounts = await self.chain.accounts([Pubkey.from_string(r["mint_address"]) for r in indexed])
        members = [m for r, a in zip(indexed, member_accounts, strict=True)
                   if (m := member_of(r, a, address)) is not None]
        members.sort(key=lambda m: m.member_number)
        return CollectionDetail(**collection.model_dump(), members=members).model_copy(update={
            "room_id": room["id"] if room else None, "room_name": room["name"] if room else None})


def _sign(message: Message, signers: Sequence[Keypair]) -> VersionedTransaction:
    """The transaction with the signatures of `signers`; other slots (the wallet) left empty."""
    data = to_bytes_versioned(message)
    by_key = {s.pubkey(): s for s in signers}
    required = message.account_keys[: message.header.num_required_signatures]
    sigs = [by_key[k].sign_message(data) if k in by_key else Signature.default() for k in required]
    return VersionedTransaction.populate(message, sigs)


def _already_minted(kind: Kind, mint: str) -> errors.Conflict:
    return errors.Conflict(f"this {kind} has already been minted", code="already_minted", details={"mint": mint})


def _result(row: asyncpg.Record) -> MintResult:
    pending = row["status"] == "pending"
    return MintResult(
        status="pending" if pending else "confirmed", kind=row["kind"], mint=row["mint_address"],
        owner=row["owner_wallet"], fee_payer=row["fee_payer"], collection_mint=row["collection_mint"],
        name=row["name"], symbol=row["symbol"], metadata_uri=row["metadata_uri"], metadata_cid=row["metadata_cid"],
        transaction=row["transaction"] if pending and row["mode"] == "wallet" else None,
        last_valid_block_height=row["last_valid_block_height"] if pending else None,
        signature=row["tx_signature"],
        highlight_id=row["subject_id"] if row["kind"] == "highlight" else None,
        room_id=row["subject_id"] if row["kind"] == "room" else None,
    )


def from_settings(settings: Settings, pool: asyncpg.Pool, chain: ChainReader, blobs: BlobStore,
                  rooms: RoomCollections, modes: dict[str, str], *,
                  metrics: Metrics | None = None) -> NftService:
    """The service as configured; without server keys (another cluster, none configured) it
    answers nft_unavailable. Raises KeyFileError for a configured keypair file that cannot be
    read (`NFT_MINT_MODE` itself is validated with the settings, before start-up)."""
    local = settings.solana_chain_id.removeprefix("solana:") == "localnet"
    keys = load_server_keys(settings.nft_fee_payer_keypair, settings.nft_authority_keypair, settings.data_dir,
                            local_ledger=local)
    mode: Mode = settings.nft_mint_mode
    limits = SponsorLimits(user_mints_per_day=settings.nft_sponsored_user_mints_per_day,
                           mints_per_day=settings.nft_sponsored_mints_per_day,
                           lamports_per_day=settings.nft_sponsored_lamports_per_day,
                           room_min_age_seconds=settings.nft_sponsored_room_min_age_seconds)
    if keys is None:
        modes["nft"] = "disabled: configure NFT_FEE_PAYER_KEYPAIR and NFT_AUTHORITY_KEYPAIR"
    else:
        modes["nft"] = f"{mode} mints, collection authority {keys.collection_authority.pubkey}"
        if mode == "sponsored":
            modes["nft"] += (f"; sponsor {keys.fee_payer.pubkey}: {limits.user_mints_per_day}/user/day, "
                             f"{limits.mints_per_day}/day, {limits.lamports_per_day} lamports/day")
    return NftService(pool, chain, blobs, keys, origin=settings.origin, rooms=rooms, mode=mode,
                      local_ledger=local, limits=limits, metrics=metrics)

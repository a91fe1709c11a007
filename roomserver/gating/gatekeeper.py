"""Token and NFT gates: does a wallet hold what a room requires?

A `Gatekeeper` reads the chain through the one `ChainReader` (roomserver.chain.rpc:
commitment `confirmed`, base64 accounts decoded here, so any standard RPC works) and caches
each `Decision` in a `GateCache` for `ttl_seconds`. Errors reaching the RPC raise
`Unavailable` ("gating_unavailable", with a fixed `reason`, never the node's text): gated
joins fail closed; callers decide what that means for members already inside. Refusals are not errors: they are `Decision(allowed=False)` with
code "insufficient_holdings" or "not_in_collection".

Only initialized token accounts count (state 1): a frozen account (state 2) holds tokens its
owner cannot move, so it proves nothing. token gate: the sum over every such account the
wallet owns for the mint, under both token programs, compared with `min_amount` whole tokens scaled by the mint's decimals.
nft gate: the wallet holds amount 1 of a decimals-0, supply-1 mint that is a proven member
of the collection: a Token-2022 TokenGroupMember extension on the mint itself whose group
is the collection, or a Metaplex metadata PDA (owned by the Token Metadata program, for
this mint) whose collection is `verified` and equals the collection. Names and symbols are
never looked at.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from solana.rpc.commitment import Confirmed
from solana.rpc.models import TokenAccountOpts
from solders.account import Account
from solders.pubkey import Pubkey

from roomserver.chain import metaplex
from roomserver.chain.rpc import ChainReader
from roomserver.chain.spl_token import (
    TOKEN_2022_PROGRAM,
    TOKEN_GROUP,
    TOKEN_GROUP_MEMBER,
    TOKEN_PROGRAMS,
    LayoutError,
    Mint,
    TokenAccount,
    decode_account,
    decode_mint,
)
from roomserver.errors import BadRequest, Unavailable
from roomserver.observe.metrics import Metrics

UNAVAILABLE = "gating_unavailable"
INITIALIZED = 1  # token account state: 0 uninitialized, 1 initialized, 2 frozen
MAX_RAW_AMOUNT = 2**64 - 1


@dataclass(frozen=True)
class Gate:
    kind: Literal["token", "nft"]
    address: str  # the mint (token) or collection mint (nft), base58
    min_amount: Decimal | None = None  # whole tokens; token gates only


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str | None  # None when allowed; "insufficient_holdings" / "not_in_collection"
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    checked_at: float = 0.0  # unix time the chain was read (a cached decision keeps its own)


class GateCache(Protocol):
    async def get(self, key: str) -> Decision | None: ...
    async def set(self, key: str, decision: Decision, ttl_seconds: float) -> None: ...


class MemoryGateCache:
    """One node's cache; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._items: dict[str, tuple[float, Decision]] = {}

    async def get(self, key: str) -> Decision | None:
        item = self._items.get(key)
        if item is None or item[0] <= self._clock():
            self._items.pop(key, None)
            return None
        return item[1]

    async def set(self, key: str, decision: Decision, ttl_seconds: float) -> None:
        if len(self._items) > 100_000:  # bound memory: drop expired entries
            now = self._clock()
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
        self._items[key] = (self._clock() + ttl_seconds, decision)


class RedisGateCache:
    """Shared across nodes; `redis` is a `redis.asyncio.Redis` the caller owns."""

    def __init__(self, redis: Any, prefix: str = "roomserver:gate:"):
        self._redis, self._prefix = redis, prefix

    async def get(self, key: str) -> Decision | None:
        raw = await self._redis.get(self._prefix + key)
        return None if raw is None else Decision(**json.loads(raw))

    async def set(self, key: str, decision: Decision, ttl_seconds: float) -> None:
        payload = json.dumps(asdict(decision), separators=(",", ":"))
        await self._redis.set(self._prefix + key, payload, px=max(1, int(ttl_seconds * 1000)))


def _pubkey(address: str, what: str, code: str = "invalid_gate") -> Pubkey:
    try:
        if not isinstance(address, str) or not 32 <= len(address) <= 44:
            raise ValueError(address)
        return Pubkey.from_string(address)
    except ValueError:
        raise BadRequest(f"{what} is not a base58 address", code=code, details={"address": str(address)}) from None


class Gatekeeper:
    """Gate checks over one chain reader; `rpc_healthy` is the last known RPC state."""

    def __init__(self, chain: ChainReader, cache: GateCache, ttl_seconds: float = 30,
                 *, metrics: Metrics | None = None):
        self.chain, self.cache, self.ttl = chain.with_code(UNAVAILABLE), cache, ttl_seconds
        self._checks = (metrics or Metrics.unexposed()).gate_checks

    @property
    def rpc_healthy(self) -> bool:
        return self.chain.healthy

    async def _holdings(self, wallet: Pubkey) -> list[TokenAccount]:
        """Every token account `wallet` owns, under both token programs."""
        answers = await asyncio.gather(*(
            self.chain.call(self.chain.client.get_token_accounts_by_owner(
                wallet, TokenAccountOpts(program_id=Pubkey.from_string(p)), Confirmed))
            for p in TOKEN_PROGRAMS
        ))
        held = []
        for answer in answers:
            for keyed in answer.value:
                try:
                    account = decode_account(bytes(keyed.account.data))
                except LayoutError:
                    continue
                if account.owner == str(wallet) and account.state == INITIALIZED:  # not frozen
                    held.append(account)
        return held

    async def check(self, wallet: str, gate: Gate, *, use_cache: bool = True) -> Decision:
        """Allowed or refused (a Decision); raises Unavailable when the RPC can't be reached
        and BadRequest ("invalid_wallet" / "invalid_gate") for an address that is not base58.
        Counted by outcome: allowed, refused (cached answers too) or unavailable."""
        try:
            decision = await self._check(wallet, gate, use_cache)
        except Unavailable:
            self._checks.labels("unavailable").inc()
            raise
        self._checks.labels("allowed" if decision.allowed else "refused").inc()
        return decision

    async def _check(self, wallet: str, gate: Gate, use_cache: bool) -> Decision:
        owner = _pubkey(wallet, "wallet", "invalid_wallet")
        key = f"{gate.kind}:{gate.address}:{gate.min_amount}:{wallet}"
        if use_cache and (cached := await self.cache.get(key)) is not None:
            return cached
        if gate.kind == "token":
            decision = await self._check_token(owner, gate)
        else:
            decision = await self._check_nft(owner, gate)
        decision = replace(decision, checked_at=time.time())
        await self.cache.set(key, decision, self.ttl)
        return decision

    async def _check_token(self, wallet: Pubkey, gate: Gate) -> Decision:
        mint_key = _pubkey(gate.address, "mint")
        (mint_account,) = await self.chain.accounts([mint_key])
        mint = _as_mint(mint_account)
        required = gate.min_amount or Decimal(0)
        details: dict[str, Any] = {"mint": gate.address, "required": str(required)}
        if mint is None:
            return Decision(False, "insufficient_holdings", f"{gate.address} is not a token mint", details)
        held_raw = sum(a.amount for a in await self._holdings(wallet) if a.mint == gate.address)
        required_raw = int((required * 10**mint.decimals).to_integral_value(rounding="ROUND_CEILING"))
        held = Decimal(held_raw).scaleb(-mint.decimals)
        details.update(held=str(held), decimals=mint.decimals)
        if held_raw >= required_raw:
            return Decision(True, None, "holds enough", details)
        message = f"this room requires at least {required} of token {gate.address}; the wallet holds {held}"
        return Decision(False, "insufficient_holdings", message, details)

    async def _check_nft(self, wallet: Pubkey, gate: Gate) -> Decision:
        collection = _pubkey(gate.address, "collection")
        candidates = sorted({a.mint for a in await self._holdings(wallet) if a.amount == 1})
        mints = [Pubkey.from_string(m) for m in candidates]
        pdas = [metaplex.metadata_address(m) for m in mints]
        accounts = await self.chain.accounts(mints + pdas)
        for mint_key, mint_account, meta_account in zip(mints, accounts[: len(mints)], accounts[len(mints) :], strict=True):
            if _is_member(mint_key, mint_account, meta_account, collection):
                return Decision(True, None, "holds a collection NFT",
                                {"collection": gate.address, "nft": str(mint_key)})
        message = f"this room requires an NFT of collection {gate.address}; the wallet holds none"
        return Decision(False, "not_in_collection", message, {"collection": gate.address})

    async def validate_gate(self, gate: Gate) -> None:
        """For room creation: raises BadRequest(code="invalid_gate") unless the address is a
        mint (token) / a collection (nft) on the cluster and the amount fits; Unavailable
        when the RPC can't be reached."""
        if gate.kind not in ("token", "nft"):
            raise BadRequest("gate kind must be token or nft", code="invalid_gate", details={"kind": gate.kind})
        key = _pubkey(gate.address, "address")
        accounts = await self.chain.accounts([key, metaplex.metadata_address(key)])
        mint = _as_mint(accounts[0])
        details = {"address": gate.address}
        if accounts[0] is None:
            raise BadRequest(f"{gate.address} does not exist on the cluster", code="invalid_gate", details=details)
        if mint is None:
            raise BadRequest(f"{gate.address} is not a token mint", code="invalid_gate", details=details)
        if gate.kind == "token":
            _validate_amount(gate.min_amount, mint.decimals, details)
            return
        if gate.min_amount not in (None, Decimal(1)):
            raise BadRequest("an NFT gate takes no minimum amount", code="invalid_gate", details=details)
        group = mint.extension(TOKEN_GROUP)
        is_group = str(accounts[0].owner) == TOKEN_2022_PROGRAM and group is not None and (group.state or {}).get("mint") == gate.address
        if not (is_group or _metaplex_metadata(key, accounts[1]) is not None):
            raise BadRequest(f"{gate.address} is not an NFT collection", code="invalid_gate", details=details)


def _validate_amount(amount: Decimal | None, decimals: int, details: dict[str, Any]) -> None:
    try:
        raw = None if amount is None else Decimal(amount) * 10**decimals
    except (InvalidOperation, TypeError):
        raw = None
    if raw is None or not raw.is_finite() or raw <= 0 or raw != raw.to_integral_value() or raw > MAX_RAW_AMOUNT:
        raise BadRequest(
            f"the minimum amount must be a positive number of whole tokens with at most {decimals} decimals",
            code="invalid_gate", details={**details, "min_amount": str(amount), "decimals": decimals},
        )


def _as_mint(account: Account | None) -> Mint | None:
    if account is None or str(account.owner) not in TOKEN_PROGRAMS:
        return None
    try:
        mint = decode_mint(bytes(account.data))
    except LayoutError:
        return None
    return mint if mint.is_initialized else None


def _metaplex_metadata(mint: Pubkey, account: Account | None) -> metaplex.Metadata | None:
    if account is None or account.owner != metaplex.PROGRAM_ID:
        return None
    try:
        meta = metaplex.parse_metadata(bytes(account.data))
    except metaplex.MetadataError:
        return None
    return meta if meta.mint == str(mint) else None


def _is_member(mint_key: Pubkey, mint_account: Account | None, meta_account: Account | None,
               collection: Pubkey) -> bool:
    mint = _as_mint(mint_account)
    if mint is None or mint.decimals != 0 or mint.supply != 1:
        return False
    if mint_account is not None and str(mint_account.owner) == TOKEN_2022_PROGRAM:
        member = mint.extension(TOKEN_GROUP_MEMBER)
        state = member.state if member is not None else None
        if state and state.get("mint") == str(mint_key) and state.get("group") == str(collection):
            return True
    meta = _metaplex_metadata(mint_key, meta_account)
    return bool(meta and meta.collection and meta.collection.verified and meta.collection.key == str(collection))

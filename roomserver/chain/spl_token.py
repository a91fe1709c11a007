"""Binary layouts of SPL Token and Token-2022 mints and token accounts.

Pure functions, no I/O. `decode_mint` / `decode_account` read account data as stored on
chain (Token-2022 extensions included: byte 165 is the account type, then TLV entries of
u16 type + u16 length); `encode_mint` / `encode_account` write the same bytes back.
Extension states use the camelCase field names of the standard `jsonParsed` RPC encoding.
Malformed data raises `LayoutError` (a ValueError), never an IndexError or struct.error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from solders.pubkey import Pubkey

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
TOKEN_PROGRAMS = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)
MINT_SIZE = 82
ACCOUNT_SIZE = 165
ACCOUNT_TYPE_MINT = 1
ACCOUNT_TYPE_ACCOUNT = 2
ACCOUNT_STATES = ("uninitialized", "initialized", "frozen")

# Token-2022 extension type numbers -> jsonParsed names.
EXTENSION_NAMES = {
    0: "uninitialized", 1: "transferFeeConfig", 2: "transferFeeAmount", 3: "mintCloseAuthority",
    4: "confidentialTransferMint", 5: "confidentialTransferAccount", 6: "defaultAccountState",
    7: "immutableOwner", 8: "memoTransfer", 9: "nonTransferable", 10: "interestBearingConfig",
    11: "cpiGuard", 12: "permanentDelegate", 13: "nonTransferableAccount", 14: "transferHook",
    15: "transferHookAccount", 16: "confidentialTransferFeeConfig",
    17: "confidentialTransferFeeAmount", 18: "metadataPointer", 19: "tokenMetadata",
    20: "groupPointer", 21: "tokenGroup", 22: "groupMemberPointer", 23: "tokenGroupMember",
    24: "confidentialMintBurn", 25: "scaledUiAmountConfig", 26: "pausableConfig",
    27: "pausableAccount",
}
EXTENSION_TYPES = {name: num for num, name in EXTENSION_NAMES.items()}
METADATA_POINTER, TOKEN_METADATA, GROUP_POINTER, TOKEN_GROUP = 18, 19, 20, 21
GROUP_MEMBER_POINTER, TOKEN_GROUP_MEMBER = 22, 23


class LayoutError(ValueError):
    """Account data does not match the layout it was read as."""


@dataclass(frozen=True)
class Extension:
    """One Token-2022 extension. `state` is None for flag extensions (no data) and for
    types this module does not parse, whose bytes stay in `raw`."""

    kind: int
    state: dict[str, Any] | None = None
    raw: bytes = b""

    @property
    def name(self) -> str:
        return EXTENSION_NAMES.get(self.kind, "unparseableExtension")


@dataclass(frozen=True)
class Mint:
    mint_authority: str | None
    supply: int
    decimals: int
    is_initialized: bool = True
    freeze_authority: str | None = None
    extensions: tuple[Extension, ...] = ()

    def extension(self, kind: int) -> Extension | None:
        return next((e for e in self.extensions if e.kind == kind), None)


@dataclass(frozen=True)
class TokenAccount:
    mint: str
    owner: str
    amount: int
    delegate: str | None = None
    state: int = 1
    is_native: int | None = None
    delegated_amount: int = 0
    close_authority: str | None = None
    extensions: tuple[Extension, ...] = field(default=())


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise LayoutError(f"{self.what}: data ends at byte {len(self.data)}, needed {self.pos + n}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def pubkey(self) -> str:
        return str(Pubkey.from_bytes(self.take(32)))

    def nonzero_pubkey(self) -> str | None:
        raw = self.take(32)
        return None if raw == bytes(32) else str(Pubkey.from_bytes(raw))

    def coption_pubkey(self) -> str | None:
        tag = self.u32()
        key = self.pubkey()
        if tag not in (0, 1):
            raise LayoutError(f"{self.what}: bad option tag {tag}")
        return key if tag == 1 else None

    def string(self) -> str:
        raw = self.take(self.u32())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LayoutError(f"{self.what}: string is not UTF-8") from exc


def _pk(value: str | None) -> bytes:
    return bytes(32) if value is None else bytes(Pubkey.from_string(value))


def _coption(value: str | None) -> bytes:
    return struct.pack("<I", 0 if value is None else 1) + _pk(value)


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


# -- extensions ---------------------------------------------------------------------------

_POINTERS = {
    METADATA_POINTER: "metadataAddress", GROUP_POINTER: "groupAddress",
    GROUP_MEMBER_POINTER: "memberAddress",
}


def _decode_extension(kind: int, value: bytes) -> Extension:
    r = _Reader(value, EXTENSION_NAMES.get(kind, "extension"))
    state: dict[str, Any] | None
    if kind in _POINTERS:
        state = {"authority": r.nonzero_pubkey(), _POINTERS[kind]: r.nonzero_pubkey()}
    elif kind == TOKEN_METADATA:
        state = {"updateAuthority": r.nonzero_pubkey(), "mint": r.pubkey(), "name": r.string(),
                 "symbol": r.string(), "uri": r.string()}
        state["additionalMetadata"] = [[r.string(), r.string()] for _ in range(r.u32())]
    elif kind == TOKEN_GROUP:
        state = {"updateAuthority": r.nonzero_pubkey(), "mint": r.pubkey(), "size": r.u64(),
                 "maxSize": r.u64()}
    elif kind == TOKEN_GROUP_MEMBER:
        state = {"mint": r.pubkey(), "group": r.pubkey(), "memberNumber": r.u64()}
    elif kind == 3:
        state = {"closeAuthority": r.nonzero_pubkey()}
    elif kind == 12:
        state = {"delegate": r.nonzero_pubkey()}
    elif kind == 6:
        state = {"accountState": ACCOUNT_STATES[min(r.u8(), 2)]}
    elif kind in (7, 9, 13):
        return Extension(kind)
    else:
        return Extension(kind, None, value)
    if r.pos != len(value):
        raise LayoutError(f"{r.what}: {len(value) - r.pos} unexpected trailing bytes")
    return Extension(kind, state)


def _encode_extension(ext: Extension) -> bytes:
    s = ext.state or {}
    k = ext.kind
    if k in _POINTERS:
        return _pk(s["authority"]) + _pk(s[_POINTERS[k]])
    if k == TOKEN_METADATA:
        out = _pk(s["updateAuthority"]) + _pk(s["mint"])
        out += _string(s["name"]) + _string(s["symbol"]) + _string(s["uri"])
        out += struct.pack("<I", len(s["additionalMetadata"]))
        return out + b"".join(_string(a) + _string(b) for a, b in s["additionalMetadata"])
    if k == TOKEN_GROUP:
        return _pk(s["updateAuthority"]) + _pk(s["mint"]) + struct.pack("<QQ", s["size"], s["maxSize"])
    if k == TOKEN_GROUP_MEMBER:
        return _pk(s["mint"]) + _pk(s["group"]) + struct.pack("<Q", s["memberNumber"])
    if k == 3:
        return _pk(s["closeAuthority"])
    if k == 12:
        return _pk(s["delegate"])
    if k == 6:
        return bytes([ACCOUNT_STATES.index(s["accountState"])])
    return ext.raw


def _decode_tlv(data: bytes, account_type: int) -> tuple[Extension, ...]:
    if len(data) <= ACCOUNT_SIZE:
        return ()
    if data[ACCOUNT_SIZE] != account_type:
        raise LayoutError(f"account type byte is {data[ACCOUNT_SIZE]}, expected {account_type}")
    r = _Reader(data, "extensions")
    r.pos = ACCOUNT_SIZE + 1
    out: list[Extension] = []
    while r.pos + 4 <= len(data):
        kind, length = r.u16(), r.u16()
        if kind == 0:  # the rest is unused space
            break
        out.append(_decode_extension(kind, r.take(length)))
    return tuple(out)


def _encode_tlv(extensions: tuple[Extension, ...], account_type: int) -> bytes:
    if not extensions:
        return b""
    out = bytes([account_type])
    for ext in extensions:
        value = _encode_extension(ext)
        out += struct.pack("<HH", ext.kind, len(value)) + value
    return out


# -- mints and accounts -------------------------------------------------------------------


def decode_mint(data: bytes) -> Mint:
    """Read a mint of either token program. Raises LayoutError on malformed data."""
    if len(data) != MINT_SIZE and len(data) <= ACCOUNT_SIZE:
        raise LayoutError(f"a mint is {MINT_SIZE} bytes (or more than {ACCOUNT_SIZE}), got {len(data)}")
    r = _Reader(data, "mint")
    authority = r.coption_pubkey()
    supply, decimals, initialized = r.u64(), r.u8(), r.u8()
    freeze = r.coption_pubkey()
    if len(data) > ACCOUNT_SIZE and any(data[MINT_SIZE:ACCOUNT_SIZE]):
        raise LayoutError("mint padding is not zero")
    extensions = _decode_tlv(data, ACCOUNT_TYPE_MINT)
    return Mint(authority, supply, decimals, bool(initialized), freeze, extensions)


def encode_mint(mint: Mint) -> bytes:
    out = _coption(mint.mint_authority) + struct.pack("<QBB", mint.supply, mint.decimals, int(mint.is_initialized))
    out += _coption(mint.freeze_authority)
    if mint.extensions:
        out += bytes(ACCOUNT_SIZE - MINT_SIZE) + _encode_tlv(mint.extensions, ACCOUNT_TYPE_MINT)
    return out


def decode_account(data: bytes) -> TokenAccount:
    """Read a token account of either token program. Raises LayoutError on malformed data."""
    if len(data) < ACCOUNT_SIZE:
        raise LayoutError(f"a token account is at least {ACCOUNT_SIZE} bytes, got {len(data)}")
    r = _Reader(data, "token account")
    mint, owner, amount = r.pubkey(), r.pubkey(), r.u64()
    delegate = r.coption_pubkey()
    state = r.u8()
    if state > 2:
        raise LayoutError(f"token account state {state} is not a known state")
    native_tag, native = r.u32(), r.u64()
    delegated, close = r.u64(), r.coption_pubkey()
    extensions = _decode_tlv(data, ACCOUNT_TYPE_ACCOUNT)
    is_native = native if native_tag == 1 else None
    return TokenAccount(mint, owner, amount, delegate, state, is_native, delegated, close, extensions)


def encode_account(acc: TokenAccount) -> bytes:
    out = _pk(acc.mint) + _pk(acc.owner) + struct.pack("<Q", acc.amount) + _coption(acc.delegate)
    out += bytes([acc.state]) + struct.pack("<IQ", 0 if acc.is_native is None else 1, acc.is_native or 0)
    out += struct.pack("<Q", acc.delegated_amount) + _coption(acc.close_authority)
    return out + _encode_tlv(acc.extensions, ACCOUNT_TYPE_ACCOUNT)


def ui_amount_string(amount: int, decimals: int) -> str:
    """The standard `uiAmountString`: decimal point placed, trailing zeros trimmed."""
    if decimals == 0:
        return str(amount)
    digits = str(amount).rjust(decimals + 1, "0")
    text = f"{digits[:-decimals]}.{digits[-decimals:]}"
    return text.rstrip("0").rstrip(".")

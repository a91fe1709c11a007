"""Instruction builders for Token-2022 extensions that solana-py does not ship.

Pointer extensions (metadata, group, group member) are Token-2022 instructions 39/40/41
with sub-instruction 0 (initialize). The token-metadata and token-group interface
instructions start with an 8-byte discriminator, the first 8 bytes of
sha256("<namespace>:<instruction>"), followed by borsh fields. All pure: no I/O.
"""

from __future__ import annotations

import hashlib
import struct

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from roomserver.chain.spl_token import ACCOUNT_SIZE, TOKEN_2022_PROGRAM

PROGRAM_ID = Pubkey.from_string(TOKEN_2022_PROGRAM)
_METADATA_POINTER, _GROUP_POINTER, _GROUP_MEMBER_POINTER = 39, 40, 41
_TLV_HEADER = 4
POINTER_SIZE = 64
TOKEN_GROUP_SIZE = 80
TOKEN_GROUP_MEMBER_SIZE = 72


def discriminator(name: str) -> bytes:
    """First 8 bytes of sha256 of an interface instruction name."""
    return hashlib.sha256(name.encode()).digest()[:8]


def _borsh_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def _opt_key(key: Pubkey | None) -> bytes:
    return bytes(32) if key is None else bytes(key)


def _pointer(code: int, mint: Pubkey, authority: Pubkey | None, address: Pubkey) -> Instruction:
    data = bytes([code, 0]) + _opt_key(authority) + bytes(address)
    return Instruction(PROGRAM_ID, data, [AccountMeta(mint, is_signer=False, is_writable=True)])


def initialize_metadata_pointer(mint: Pubkey, authority: Pubkey | None, metadata: Pubkey) -> Instruction:
    return _pointer(_METADATA_POINTER, mint, authority, metadata)


def initialize_group_pointer(mint: Pubkey, authority: Pubkey | None, group: Pubkey) -> Instruction:
    return _pointer(_GROUP_POINTER, mint, authority, group)


def initialize_group_member_pointer(mint: Pubkey, authority: Pubkey | None, member: Pubkey) -> Instruction:
    return _pointer(_GROUP_MEMBER_POINTER, mint, authority, member)


def initialize_token_metadata(
    metadata: Pubkey, update_authority: Pubkey, mint: Pubkey, mint_authority: Pubkey,
    name: str, symbol: str, uri: str,
) -> Instruction:
    data = discriminator("spl_token_metadata_interface:initialize_account")
    data += _borsh_string(name) + _borsh_string(symbol) + _borsh_string(uri)
    accounts = [
        AccountMeta(metadata, False, True), AccountMeta(update_authority, False, False),
        AccountMeta(mint, False, False), AccountMeta(mint_authority, True, False),
    ]
    return Instruction(PROGRAM_ID, data, accounts)


def update_token_metadata_field(metadata: Pubkey, update_authority: Pubkey, key: str, value: str) -> Instruction:
    """Set a field; "name"/"symbol"/"uri" are the base fields, any other key is an extra field."""
    base = {"name": 0, "symbol": 1, "uri": 2}
    field = bytes([base[key]]) if key in base else b"\x03" + _borsh_string(key)
    data = discriminator("spl_token_metadata_interface:updating_field") + field + _borsh_string(value)
    accounts = [AccountMeta(metadata, False, True), AccountMeta(update_authority, True, False)]
    return Instruction(PROGRAM_ID, data, accounts)


def initialize_token_group(
    group: Pubkey, mint: Pubkey, mint_authority: Pubkey, update_authority: Pubkey | None, max_size: int,
) -> Instruction:
    data = discriminator("spl_token_group_interface:initialize_token_group")
    data += _opt_key(update_authority) + struct.pack("<Q", max_size)
    accounts = [
        AccountMeta(group, False, True), AccountMeta(mint, False, False),
        AccountMeta(mint_authority, True, False),
    ]
    return Instruction(PROGRAM_ID, data, accounts)


def initialize_member(
    member: Pubkey, member_mint: Pubkey, member_mint_authority: Pubkey,
    group: Pubkey, group_update_authority: Pubkey,
) -> Instruction:
    data = discriminator("spl_token_group_interface:initialize_member")
    accounts = [
        AccountMeta(member, False, True), AccountMeta(member_mint, False, False),
        AccountMeta(member_mint_authority, True, False), AccountMeta(group, False, True),
        AccountMeta(group_update_authority, True, False),
    ]
    return Instruction(PROGRAM_ID, data, accounts)


def mint_space(pointer_count: int) -> int:
    """Bytes to allocate for a mint with `pointer_count` pointer extensions (before the
    metadata / group data that Token-2022 appends by reallocation)."""
    return ACCOUNT_SIZE + 1 + pointer_count * (_TLV_HEADER + POINTER_SIZE)


def metadata_size(name: str, symbol: str, uri: str, extra: dict[str, str] | None = None) -> int:
    """TLV bytes a TokenMetadata entry takes."""
    strings = [name, symbol, uri, *((extra or {}).keys()), *((extra or {}).values())]
    return _TLV_HEADER + 64 + sum(4 + len(s.encode()) for s in strings) + 4


GROUP_SIZE = _TLV_HEADER + TOKEN_GROUP_SIZE
MEMBER_SIZE = _TLV_HEADER + TOKEN_GROUP_MEMBER_SIZE

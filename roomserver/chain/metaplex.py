"""Metaplex Token Metadata accounts: the PDA and a borsh reader (and writer, for tests).

Layout (MetadataV1): key u8 = 4, update_authority, mint, name/symbol/uri (u32-length
strings, NUL-padded on chain), seller_fee_basis_points u16, creators Option<Vec<Creator>>,
primary_sale_happened, is_mutable, edition_nonce Option<u8>, token_standard Option<u8>,
collection Option<{verified bool, key}>, then fields this module does not need.
Fields are walked in order (no fixed offsets). Data that ends inside a field or carries a
bad tag raises `MetadataError`; data ending cleanly after `is_mutable` is an old account
without the later optional fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.pubkey import Pubkey

PROGRAM_ID = Pubkey.from_string("metaqbxxUerdq28cj1RbAWkYQm3ybzjb6a8bt518x1s")
KEY_METADATA_V1 = 4


class MetadataError(ValueError):
    """The bytes are not a Metaplex metadata account."""


@dataclass(frozen=True)
class Creator:
    address: str
    verified: bool
    share: int


@dataclass(frozen=True)
class Collection:
    verified: bool
    key: str


@dataclass(frozen=True)
class Metadata:
    update_authority: str
    mint: str
    name: str
    symbol: str
    uri: str
    seller_fee_basis_points: int = 0
    creators: tuple[Creator, ...] | None = None
    primary_sale_happened: bool = False
    is_mutable: bool = True
    edition_nonce: int | None = None
    token_standard: int | None = None
    collection: Collection | None = None


def metadata_address(mint: Pubkey) -> Pubkey:
    """The metadata PDA: seeds ["metadata", program id, mint]."""
    return Pubkey.find_program_address([b"metadata", bytes(PROGRAM_ID), bytes(mint)], PROGRAM_ID)[0]


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MetadataError(f"metadata truncated at byte {len(self.data)} (needed {self.pos + n})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def boolean(self) -> bool:
        value = self.u8()
        if value > 1:
            raise MetadataError(f"bad bool {value} at byte {self.pos - 1}")
        return value == 1

    def option(self) -> bool:
        tag = self.u8()
        if tag > 1:
            raise MetadataError(f"bad option tag {tag} at byte {self.pos - 1}")
        return tag == 1

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def pubkey(self) -> str:
        return str(Pubkey.from_bytes(self.take(32)))

    def string(self) -> str:
        raw = self.take(self.u32())
        try:
            return raw.decode("utf-8").rstrip("\x00")
        except UnicodeDecodeError as exc:
            raise MetadataError("metadata string is not UTF-8") from exc


def parse_metadata(data: bytes) -> Metadata:
    """Decode a metadata account's data; raises MetadataError on anything malformed."""
    r = _Reader(bytes(data))
    if r.u8() != KEY_METADATA_V1:
        raise MetadataError("not a MetadataV1 account")
    update_authority, mint = r.pubkey(), r.pubkey()
    name, symbol, uri = r.string(), r.string(), r.string()
    fee = r.u16()
    creators = None
    if r.option():
        creators = tuple(Creator(r.pubkey(), r.boolean(), r.u8()) for _ in range(r.u32()))
    primary, mutable = r.boolean(), r.boolean()
    meta = Metadata(update_authority, mint, name, symbol, uri, fee, creators, primary, mutable)
    if r.done:
        return meta
    edition_nonce = r.u8() if r.option() else None
    token_standard = r.u8() if r.option() else None
    collection = Collection(r.boolean(), r.pubkey()) if r.option() else None
    return Metadata(update_authority, mint, name, symbol, uri, fee, creators, primary, mutable,
                    edition_nonce, token_standard, collection)


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def encode_metadata(meta: Metadata) -> bytes:
    """The borsh bytes `parse_metadata` reads (always with the optional fields, then
    `uses`, `collection_details` and `programmable_config` as None)."""
    out = bytes([KEY_METADATA_V1]) + bytes(Pubkey.from_string(meta.update_authority))
    out += bytes(Pubkey.from_string(meta.mint))
    out += _string(meta.name) + _string(meta.symbol) + _string(meta.uri)
    out += struct.pack("<H", meta.seller_fee_basis_points)
    if meta.creators is None:
        out += b"\x00"
    else:
        out += b"\x01" + struct.pack("<I", len(meta.creators))
        out += b"".join(bytes(Pubkey.from_string(c.address)) + bytes([c.verified, c.share]) for c in meta.creators)
    out += bytes([meta.primary_sale_happened, meta.is_mutable])
    out += b"\x00" if meta.edition_nonce is None else bytes([1, meta.edition_nonce])
    out += b"\x00" if meta.token_standard is None else bytes([1, meta.token_standard])
    if meta.collection is None:
        out += b"\x00"
    else:
        out += bytes([1, meta.collection.verified]) + bytes(Pubkey.from_string(meta.collection.key))
    return out + b"\x00\x00\x00"

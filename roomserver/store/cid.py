"""IPFS CIDv1 identifiers for raw blocks: codec raw (0x55), sha2-256, base32 lower ("b...").

The CID of some bytes is that of a single raw block holding all of them. It equals what
`ipfs add --cid-version=1 --raw-leaves` reports for files up to one chunk (256 KiB); larger
files are split into a UnixFS DAG by kubo and get a different (dag-pb) root CID.

Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Protocol

from roomserver.errors import BadRequest

CID_VERSION = 0x01
RAW_CODEC = 0x55
SHA2_256 = 0x12
DIGEST_SIZE = 32
# version, codec, multihash code and length are each a one-byte varint.
PREFIX = bytes([CID_VERSION, RAW_CODEC, SHA2_256, DIGEST_SIZE])
CID_LENGTH = 59  # "b" + base32 of 36 bytes without padding


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


def cid_from_digest(digest: bytes) -> str:
    """The CID string of a raw block whose sha2-256 digest is `digest` (32 bytes)."""
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"sha2-256 digest must be {DIGEST_SIZE} bytes, got {len(digest)}")
    return "b" + base64.b32encode(PREFIX + digest).decode("ascii").rstrip("=").lower()


def cid_for_bytes(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256, base32) of `data`."""
    return cid_from_digest(hashlib.sha256(data).digest())


class CidHasher:
    """Computes a CID incrementally, for data that arrives in pieces."""

    def __init__(self) -> None:
        self._hash: _Hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def cid(self) -> str:
        return cid_from_digest(self._hash.digest())


def parse_cid(text: str) -> bytes:
    """Return the sha2-256 digest inside a raw CIDv1 string.

    Raises BadRequest(code="invalid_cid") unless `text` is exactly the canonical form this
    module produces (so a valid string is also safe to use as a file name).
    """
    if not isinstance(text, str) or len(text) != CID_LENGTH or not text.startswith("b"):
        raise _invalid(text)
    body = text[1:]
    if body != body.lower():
        raise _invalid(text)
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise _invalid(text) from None
    if len(raw) != len(PREFIX) + DIGEST_SIZE or not raw.startswith(PREFIX):
        raise _invalid(text)
    digest = raw[len(PREFIX) :]
    if cid_from_digest(digest) != text:  # non-zero trailing bits: not canonical
        raise _invalid(text)
    return digest


def is_cid(text: str) -> bool:
    """True when `text` is a canonical raw sha2-256 CIDv1 string."""
    try:
        parse_cid(text)
    except BadRequest:
        return False
    return True


def _invalid(text: object) -> BadRequest:
    shown = text[:80] if isinstance(text, str) else type(text).__name__
    return BadRequest(
        "not a raw sha2-256 CIDv1 in base32", code="invalid_cid", details={"cid": shown}
    )

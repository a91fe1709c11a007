"""Sign-In-With-Solana: the message text, its strict parser, and verification.

Pure and I/O-free. The text is the one `@solana/wallet-standard-util`'s
`createSignInMessageText` builds and Phantom's `signIn` signs:

    {domain} wants you to sign in with your Solana account:
    {address}

    {statement}

    URI: {uri}
    Version: 1
    Chain ID: {chainId}
    Nonce: {nonce}
    Issued At: {issuedAt}
    Expiration Time: {expirationTime}
    Not Before: {notBefore}
    Request ID: {requestId}
    Resources:
    - {resource}

Stricter than the reference parser: every field, the statement included, is one line
without control characters; lengths are bounded; nothing may follow the last field.
So `parse_message(text)` succeeds only when `build_message` of the result is `text`.

Nonce storage and single use are the caller's (the database); `verify` compares the
message against the values the server holds in an `Expected`.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import base58
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from roomserver.errors import Unauthorized

HEADER_SUFFIX = " wants you to sign in with your Solana account:"
MAX_MESSAGE_BYTES = 8192
MAX_STATEMENT = 1024
MAX_URI = 2048
MAX_REQUEST_ID = 256
MAX_RESOURCES = 32
NONCE_LENGTH = 22  # ~131 bits from 62 symbols

REASONS = {
    "signature_invalid": "the signature does not match the message and public key",
    "nonce_unknown": "the nonce is not one this server issued for this sign-in",
    "nonce_used": "the nonce has already been used",
    "domain_mismatch": "the message is for another domain or URI",
    "address_mismatch": "the address in the message is not the signing wallet",
    "expired": "the message has expired",
    "not_yet_valid": "the message is not valid yet",
    "chain_mismatch": "the message names another chain",
    "malformed": "the sign-in message or its encoding is malformed",
}

# (attribute, label, JSON name) in message order; resources follow as a list.
_FIELDS = (
    ("uri", "URI", "uri"),
    ("version", "Version", "version"),
    ("chain_id", "Chain ID", "chainId"),
    ("nonce", "Nonce", "nonce"),
    ("issued_at", "Issued At", "issuedAt"),
    ("expiration_time", "Expiration Time", "expirationTime"),
    ("not_before", "Not Before", "notBefore"),
    ("request_id", "Request ID", "requestId"),
)
_FIELD_PREFIXES = (*(f"{label}: " for _, label, _ in _FIELDS), "Resources:")

_BASE58 = "[1-9A-HJ-NP-Za-km-z]"
_DOMAIN_RE = re.compile(r"[A-Za-z0-9._\-\[\]:]{1,255}")
_ADDRESS_RE = re.compile(_BASE58 + "{1,64}")
_CHAIN_RE = re.compile(r"[A-Za-z0-9_\-:]{1,64}")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,128}")
_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# Control, format (bidi overrides, BOM), line/paragraph separators, surrogates.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


class SiwsError(Unauthorized):
    """A refused sign-in; `code` (also `reason`) is one of `REASONS`. HTTP 401."""

    def __init__(self, reason: str, message: str | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown SIWS reason {reason!r}")
        super().__init__(message or REASONS[reason], code=reason)
        self.reason = reason


def _malformed(message: str) -> SiwsError:
    return SiwsError("malformed", message)


@dataclass(frozen=True)
class SignInInput:
    """The fields of a sign-in message; `None` means the line is absent.

    `resources=()` and `None` differ: the first writes a bare `Resources:` line.
    """

    domain: str
    address: str | None = None
    statement: str | None = None
    uri: str | None = None
    version: str | None = None
    chain_id: str | None = None
    nonce: str | None = None
    issued_at: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """Wallet-standard `SolanaSignInInput` names; absent fields are left out."""
        out: dict[str, Any] = {"domain": self.domain}
        if self.address is not None:
            out["address"] = self.address
        if self.statement is not None:
            out["statement"] = self.statement
        for attr, _, name in _FIELDS:
            value = getattr(self, attr)
            if value is not None:
                out[name] = value
        if self.resources is not None:
            out["resources"] = list(self.resources)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> SignInInput:
        """Read a wallet-standard input object. Like the JS builder, `null` and `""` mean
        absent; unknown keys are ignored. Raises SiwsError("malformed") on wrong types."""
        if not isinstance(obj, Mapping):
            raise _malformed("sign-in input must be an object")
        names = {"domain": "domain", "address": "address", "statement": "statement"}
        names.update({attr: name for attr, _, name in _FIELDS})
        values: dict[str, Any] = {}
        for attr, name in names.items():
            value = obj.get(name)
            if value is not None and not isinstance(value, str):
                raise _malformed(f"{name} must be a string")
            values[attr] = value or None
        if values["domain"] is None:
            raise _malformed("domain is required")
        resources = obj.get("resources")
        if resources is not None:
            if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
                raise _malformed("resources must be a list of strings")
            values["resources"] = tuple(resources)
        return cls(**values)


@dataclass(frozen=True)
class Expected:
    """What the server requires of a message, from its own settings and nonce record.

    `now` must be timezone-aware. `address`, when set, is the wallet the challenge was
    issued to.
    """

    domain: str
    uri_origin: str
    chain_id: str
    nonce: str | None  # None: the caller checks the nonce against its own record
    now: datetime
    max_clock_skew: timedelta = timedelta(minutes=10)
    address: str | None = None


# --- building and parsing ---------------------------------------------------------


def build_message(inp: SignInInput) -> str:
    """The exact text a wallet signs. Requires `address`; raises SiwsError("malformed")
    for any value the strict parser would not read back identically."""
    _validate(inp)
    text = f"{inp.domain}{HEADER_SUFFIX}\n{inp.address}"
    if inp.statement is not None:
        text += f"\n\n{inp.statement}"
    lines = [
        f"{label}: {getattr(inp, attr)}"
        for attr, label, _ in _FIELDS
        if getattr(inp, attr) is not None
    ]
    if inp.resources is not None:
        lines.append("Resources:")
        lines.extend(f"- {resource}" for resource in inp.resources)
    if lines:
        text += "\n\n" + "\n".join(lines)
    return text


def parse_message(text: str) -> SignInInput:
    """Parse a sign-in message strictly; raises SiwsError("malformed") on anything off
    (CRLF, trailing newline, a field out of order or repeated, a multi-line field...)."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise _malformed("message is too long")
    lines = text.split("\n")
    if len(lines) < 2 or not lines[0].endswith(HEADER_SUFFIX):
        raise _malformed(
            "message must start with '<domain> wants you to sign in ...' and an address line"
        )
    domain, address, rest = lines[0][: -len(HEADER_SUFFIX)], lines[1], lines[2:]
    statement: str | None = None
    if rest:
        rest = _after_blank(rest)
        if not rest[0].startswith(_FIELD_PREFIXES):
            statement, rest = rest[0], rest[1:]
            if rest:
                rest = _after_blank(rest)
    values = _parse_fields(rest)
    inp = SignInInput(domain=domain, address=address, statement=statement, **values)
    _validate(inp)
    return inp


def _after_blank(lines: list[str]) -> list[str]:
    """Drop the blank separator line; a block must follow it."""
    if len(lines) < 2 or lines[0] != "":
        raise _malformed("blocks must be separated by exactly one blank line")
    return lines[1:]


def _parse_fields(lines: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    position = 0
    for index, line in enumerate(lines):
        if line == "Resources:":
            items = lines[index + 1 :]
            if not all(item.startswith("- ") for item in items):
                raise _malformed("every line after 'Resources:' must start with '- '")
            values["resources"] = tuple(item[2:] for item in items)
            return values
        for offset, (attr, label, _) in enumerate(_FIELDS[position:]):
            if line.startswith(f"{label}: "):
                values[attr] = line[len(label) + 2 :]
                position += offset + 1
                break
        else:
            raise _malformed(f"unexpected, repeated or out-of-order line: {line[:80]!r}")
    return values


def _validate(inp: SignInInput) -> None:
    if not _DOMAIN_RE.fullmatch(inp.domain):
        raise _malformed("domain must be host[:port]")
    if inp.address is None or not _ADDRESS_RE.fullmatch(inp.address):
        raise _malformed("address must be a base58 public key")
    if inp.statement is not None:
        _check_line("statement", inp.statement, MAX_STATEMENT)
        if inp.statement.startswith(_FIELD_PREFIXES):
            raise _malformed("statement must not start like a field")
    if inp.uri is not None:
        _check_line("URI", inp.uri, MAX_URI)
        if any(ch.isspace() for ch in inp.uri):
            raise _malformed("URI must not contain spaces")
    if inp.version not in (None, "1"):
        raise _malformed("Version must be 1")
    if inp.chain_id is not None and not _CHAIN_RE.fullmatch(inp.chain_id):
        raise _malformed("Chain ID is not a chain identifier")
    if inp.nonce is not None and not _NONCE_RE.fullmatch(inp.nonce):
        raise _malformed("Nonce must be 8-128 letters and digits")
    for name in ("issued_at", "expiration_time", "not_before"):
        value = getattr(inp, name)
        if value is not None:
            parse_timestamp(value)
    if inp.request_id is not None:
        _check_line("Request ID", inp.request_id, MAX_REQUEST_ID)
    if inp.resources is not None:
        if len(inp.resources) > MAX_RESOURCES:
            raise _malformed(f"at most {MAX_RESOURCES} resources")
        for resource in inp.resources:
            _check_line("resource", resource, MAX_URI)


def _check_line(name: str, value: str, limit: int) -> None:
    if not value or len(value) > limit:
        raise _malformed(f"{name} must be 1-{limit} characters")
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in value):
        raise _malformed(f"{name} must be one line without control characters")


# --- timestamps ---------------------------------------------------------------------


def format_timestamp(moment: datetime) -> str:
    """UTC with milliseconds and `Z`, as `Date.prototype.toISOString` writes it."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp (`Z` or `±hh:mm`, optional fraction) as an aware datetime;
    raises SiwsError("malformed") otherwise."""
    if not _TIMESTAMP_RE.fullmatch(text):
        raise _malformed(f"not an ISO 8601 timestamp with a time zone: {text[:40]!r}")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise _malformed(f"not a valid timestamp: {text[:40]!r}") from exc


# --- transport encodings ------------------------------------------------------------


def new_nonce() -> str:
    """A fresh random nonce: 22 letters and digits from the OS CSPRNG."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(NONCE_LENGTH))


def decode_public_key(value: object) -> bytes:
    """32 bytes from base58; raises SiwsError("malformed")."""
    return _decode_base58("public_key", value, 32)


def decode_signature(value: object) -> bytes:
    """64 bytes from base58; raises SiwsError("malformed")."""
    return _decode_base58("signature", value, 64)


def decode_message(value: object) -> bytes:
    """The signed message bytes from standard base64; raises SiwsError("malformed")."""
    if not isinstance(value, str) or not value:
        raise _malformed("message must be a non-empty base64 string")
    if len(value) > (MAX_MESSAGE_BYTES + 2) // 3 * 4:
        raise _malformed("message is too long")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _malformed("message is not valid base64") from exc


def _decode_base58(name: str, value: object, size: int) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(_BASE58 + "{1,100}", value):
        raise _malformed(f"{name} must be a base58 string")
    raw = base58.b58decode(value)
    if len(raw) != size:
        raise _malformed(f"{name} must decode to {size} bytes, got {len(raw)}")
    return raw


def extract_nonce(message: bytes) -> str:
    """The nonce of a well-formed message, so the caller can find its nonce record
    before `verify`. Does not check the signature. Raises SiwsError("malformed")."""
    nonce = _parse_bytes(message).nonce
    if nonce is None:
        raise _malformed("message has no Nonce")
    return nonce


def _parse_bytes(message: bytes) -> SignInInput:
    if len(message) > MAX_MESSAGE_BYTES:
        raise _malformed("message is too long")
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("message is not UTF-8") from exc
    return parse_message(text)


# --- verification -------------------------------------------------------------------


def verify(message: bytes, signature: bytes, public_key: bytes, expected: Expected) -> SignInInput:
    """Check a signed sign-in message against what the server expects; return its fields.

    Order, so the reason names the first real problem: sizes and the ed25519 signature
    (signature_invalid); the strict parse that reproduces the bytes exactly (malformed,
    also when URI, Chain ID, Nonce or Issued At is missing); the address is the signing
    key (address_mismatch); domain and URI origin (domain_mismatch); chain
    (chain_mismatch, `x` and `solana:x` are equal); nonce (nonce_unknown); then time:
    Issued At older than the skew or Expiration Time not in the future is `expired`,
    Issued At beyond the skew ahead or Not Before in the future is `not_yet_valid`.
    Single use of the nonce is the caller's.
    """
    if len(public_key) != 32 or len(signature) != 64:
        raise _malformed("public key must be 32 bytes and signature 64 bytes")
    if len(message) > MAX_MESSAGE_BYTES:
        raise _malformed("message is too long")
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError) as exc:
        raise SiwsError("signature_invalid") from exc
    inp = _parse_bytes(message)
    if build_message(inp).encode("utf-8") != message:
        raise _malformed("message does not re-serialise to the signed bytes")
    for attr, label, _ in _FIELDS:
        if attr in ("uri", "chain_id", "nonce", "issued_at") and getattr(inp, attr) is None:
            raise _malformed(f"message has no {label}")
    _check_identity(inp, public_key, expected)
    _check_time(inp, expected)
    return inp


def _check_identity(inp: SignInInput, public_key: bytes, expected: Expected) -> None:
    signer = base58.b58encode(public_key).decode("ascii")
    if inp.address != signer:
        raise SiwsError("address_mismatch", "the address in the message is not the signing key")
    if expected.address is not None and inp.address != expected.address:
        raise SiwsError("address_mismatch", "the challenge was issued to another wallet")
    if inp.domain.lower() != expected.domain.lower():
        raise SiwsError("domain_mismatch", f"message is for domain {inp.domain!r}")
    uri, chain_id = inp.uri or "", inp.chain_id or ""
    origin = _origin(uri)
    if origin is None or origin != _origin(expected.uri_origin):
        raise SiwsError("domain_mismatch", f"message URI {uri[:100]!r} is not this server")
    if _chain(chain_id) != _chain(expected.chain_id):
        raise SiwsError("chain_mismatch", f"message is for chain {chain_id!r}")
    if expected.nonce is not None and inp.nonce != expected.nonce:
        raise SiwsError("nonce_unknown")


def _check_time(inp: SignInInput, expected: Expected) -> None:
    now, skew = expected.now, expected.max_clock_skew
    issued = parse_timestamp(inp.issued_at or "")
    if issued < now - skew:
        raise SiwsError("expired", "Issued At is too far in the past")
    if issued > now + skew:
        raise SiwsError("not_yet_valid", "Issued At is in the future")
    if inp.expiration_time is not None and parse_timestamp(inp.expiration_time) <= now:
        raise SiwsError("expired", "Expiration Time has passed")
    if inp.not_before is not None and parse_timestamp(inp.not_before) > now:
        raise SiwsError("not_yet_valid", "Not Before is in the future")


def _origin(uri: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with default ports dropped; None if it has no origin."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or "@" in parts.netloc:
        return None
    scheme = parts.scheme.lower()
    if (scheme, port) in (("http", 80), ("https", 443)):
        port = None
    return scheme, parts.hostname.lower(), port


def _chain(chain_id: str) -> str:
    return chain_id.lower().removeprefix("solana:")


__all__ = [
    "Expected",
    "SignInInput",
    "SiwsError",
    "build_message",
    "decode_message",
    "decode_public_key",
    "decode_signature",
    "extract_nonce",
    "format_timestamp",
    "new_nonce",
    "parse_message",
    "parse_timestamp",
    "verify",
]

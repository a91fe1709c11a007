"""The server's own Solana keypairs: the fee payer (sponsored mints) and the collection
authority (update authority of every room collection and NFT the server makes).

Each is read from a configured solana-CLI keypair file (a JSON array of 64 bytes). When no
file is configured and the cluster is the local ledger, a keypair is generated on first run
in `DATA_DIR/keys/` (mode 0600) with a warning. A `ServerKey` never shows its secret: its
repr and str name only the public key, and no endpoint returns it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

log = logging.getLogger(__name__)


class KeyFileError(Exception):
    """A configured keypair file is missing or malformed (raised at start-up)."""


class ServerKey:
    """A keypair that signs but never prints its secret."""

    __slots__ = ("_keypair", "role")

    def __init__(self, keypair: Keypair, role: str):
        self._keypair = keypair
        self.role = role

    @property
    def pubkey(self) -> Pubkey:
        return self._keypair.pubkey()

    def sign(self, message: bytes) -> Signature:
        return self._keypair.sign_message(message)

    def keypair(self) -> Keypair:
        """The solders keypair, for signing a transaction; never log or return it."""
        return self._keypair

    def __repr__(self) -> str:
        return f"ServerKey({self.role}, {self.pubkey})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("server keys are not serialisable")


@dataclass(frozen=True)
class ServerKeys:
    fee_payer: ServerKey
    collection_authority: ServerKey


def read_keypair(path: Path) -> Keypair:
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, list) or len(raw) != 64 or not all(isinstance(b, int) and 0 <= b < 256 for b in raw):
            raise ValueError("expected a JSON array of 64 bytes")
        return Keypair.from_bytes(bytes(raw))
    except FileNotFoundError:
        raise KeyFileError(f"keypair file {path} does not exist") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError; never echo the content
        raise KeyFileError(f"keypair file {path} is not a solana keypair: {type(exc).__name__}") from None


def _generate(path: Path) -> Keypair:
    """A new keypair written whole to a private temp file, then linked into place: a
    concurrent reader sees no file or the whole file (FileExistsError if another won)."""
    keypair = Keypair()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(list(bytes(keypair)), out)
            out.flush()
            os.fsync(out.fileno())
        os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return keypair


def load_key(role: str, configured: str, default: Path, *, may_generate: bool) -> ServerKey | None:
    """The keypair from `configured` (a path), else from `default`, generating it there when
    `may_generate`; None when there is none and it may not be generated."""
    if configured:
        return ServerKey(read_keypair(Path(configured)), role)
    if default.exists():
        return ServerKey(read_keypair(default), role)
    if not may_generate:
        return None
    try:
        keypair = _generate(default)
    except FileExistsError:  # another worker generated it first
        return ServerKey(read_keypair(default), role)
    log.warning("generated a new %s keypair for the local ledger in %s (public key %s); "
                "configure a keypair file for any other cluster", role, default, keypair.pubkey())
    return ServerKey(keypair, role)


def load_server_keys(fee_payer_file: str, authority_file: str, data_dir: Path,
                     *, local_ledger: bool) -> ServerKeys | None:
    """Both keys, or None when either is unavailable (minting is then disabled)."""
    keys_dir = data_dir.resolve() / "keys"
    payer = load_key("fee payer", fee_payer_file, keys_dir / "fee-payer.json", may_generate=local_ledger)
    authority = load_key("collection authority", authority_file, keys_dir / "collection-authority.json",
                         may_generate=local_ledger)
    if payer is None or authority is None:
        return None
    return ServerKeys(payer, authority)

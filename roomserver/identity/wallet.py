"""A software Solana wallet that signs in as Phantom's `signIn` does.

For tests and the load tester: it holds an ed25519 keypair, builds the sign-in
message from a challenge's input object with `siws.build_message` (filling in its own
address when the input has none) and signs the exact UTF-8 bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import base58
from nacl.signing import SigningKey

from roomserver.identity.siws import SignInInput, SiwsError, build_message


class Wallet:
    """An ed25519 keypair with the wallet-side half of Sign-In-With-Solana."""

    def __init__(self, signing_key: SigningKey):
        self._key = signing_key

    @classmethod
    def generate(cls) -> Wallet:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Wallet:
        """A deterministic wallet from a 32-byte seed."""
        return cls(SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @property
    def address(self) -> str:
        """The base58 public key, as Solana writes addresses."""
        return base58.b58encode(self.public_key).decode("ascii")

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ed25519 signature of `message`."""
        return self._key.sign(message).signature

    def sign_in(self, input: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """Phantom's `signIn(input)`: (signed message bytes, signature).

        Raises SiwsError("address_mismatch") if the input names another wallet, as a
        wallet refuses to sign for an account it does not hold.
        """
        fields = SignInInput.from_json(input)
        if fields.address is None:
            fields = replace(fields, address=self.address)
        elif fields.address != self.address:
            raise SiwsError("address_mismatch", "the input names another wallet")
        message = build_message(fields).encode("utf-8")
        return message, self.sign(message)

    def verify_payload(self, challenge: Mapping[str, Any]) -> dict[str, str]:
        """The body for `POST /api/v1/auth/wallet/verify`, signing `challenge["input"]`
        (or `challenge` itself when it is a bare input object)."""
        input = challenge.get("input", challenge)
        message, signature = self.sign_in(input)
        return self.payload(message, signature)

    def sign_message_payload(self, text: str) -> dict[str, str]:
        """The verify body for a wallet that only does `signMessage` of the given text."""
        message = text.encode("utf-8")
        return self.payload(message, self.sign(message))

    def payload(self, message: bytes, signature: bytes) -> dict[str, str]:
        """Encode a signed message for the wire: base58 key and signature, base64 bytes."""
        return {
            "public_key": self.address,
            "message": base64.b64encode(message).decode("ascii"),
            "signature": base58.b58encode(signature).decode("ascii"),
        }

"""Test helper: a Solana wallet that signs in like Phantom (re-exported from the package)."""

from roomserver.identity.wallet import Wallet

__all__ = ["Wallet"]

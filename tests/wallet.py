"""Test helper: a Solana wallet that signs in like Phantom (re-exported from the package)."""

from roomserver.wallet import Wallet

__all__ = ["Wallet"]

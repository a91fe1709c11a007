"""Solana: token layouts, Token-2022 and Metaplex instructions and decoding, server keys, dev commands."""

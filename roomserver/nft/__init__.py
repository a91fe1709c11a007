"""Minting highlights and rooms as Token-2022 NFTs, and their card images."""

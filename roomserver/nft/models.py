"""The NFT REST contract: request and response models of /api/v1/nft (shapes named in docs/api.md)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["highlight", "room"]
Mode = Literal["wallet", "sponsored"]


class MintHighlightRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    highlight_id: uuid.UUID


class MintRoomRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room_id: uuid.UUID


class ConfirmRequest(BaseModel):
    """`signature`: the transaction's first signature (the wallet's, as fee payer), base58."""

    model_config = ConfigDict(extra="forbid")
    signature: str = Field(min_length=64, max_length=90)


class MintResult(BaseModel):
    """`pending`: sign `transaction` (base64) as fee payer, send it, then POST /nft/confirm.
    `confirmed`: the NFT is on the ledger and recorded."""

    status: Literal["pending", "confirmed"]
    kind: Kind
    mint: str
    owner: str
    fee_payer: str
    collection_mint: str | None
    name: str
    symbol: str
    metadata_uri: str
    metadata_cid: str
    transaction: str | None = None
    last_valid_block_height: int | None = None
    signature: str | None = None
    highlight_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None


class CollectionMember(BaseModel):
    mint: str
    member_number: int
    name: str
    symbol: str
    uri: str
    additional_metadata: list[list[str]]
    highlight_id: uuid.UUID | None
    minted_to: str | None


class Collection(BaseModel):
    mint: str
    name: str
    symbol: str
    uri: str
    size: int
    max_size: int
    update_authority: str | None
    room_id: uuid.UUID | None
    room_name: str | None


class CollectionDetail(Collection):
    members: list[CollectionMember]


class CollectionList(BaseModel):
    collections: list[Collection]

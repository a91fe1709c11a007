"""Study rooms' data: what the service returns (rooms, participants, bans, invitations, pages, a
message history page) and what it is asked (a draft, changes, list filters), validated here so that every caller (REST
body, test, another service) gets the same 400 `validation_error` rules.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import base58
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roomserver.values import clean_tags

RoomType = Literal["public", "private", "token_gated", "nft_gated"]
Role = Literal["owner", "moderator", "member"]


class Room(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    topic: str | None
    tags: list[str]
    room_type: RoomType
    owner_id: uuid.UUID
    access_token_mint: str | None
    access_nft_collection: str | None
    min_token_amount: str | None = Field(description="whole tokens, as a decimal string")
    max_participants: int
    participant_count: int
    is_active: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    my_role: Role | None = Field(description="the viewer's role, null when not a member")
    focus_open: bool = Field(False, description="any member may control the focus timer "
                                                "(else owner and moderators only)")


class Participant(BaseModel):
    room_id: uuid.UUID
    user_id: uuid.UUID
    role: Role
    wallet_address: str | None = Field(description="shown to the room's members (and the user); null for others")
    username: str | None
    joined_at: datetime
    last_active_at: datetime


class Ban(BaseModel):
    room_id: uuid.UUID
    user_id: uuid.UUID
    reason: str | None
    banned_by: uuid.UUID


class Invitation(BaseModel):
    room_id: uuid.UUID
    user_id: uuid.UUID
    invited_by: uuid.UUID
    created_at: datetime


class RoomPage(BaseModel):
    rooms: list[Room]
    next_cursor: str | None


MAX_TAGS = 10


def _clean_tags(tags: list[str] | None) -> list[str] | None:
    return None if tags is None else clean_tags(tags, most=MAX_TAGS)


def _check_address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        raw = base58.b58decode(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError("must be a base58 Solana address (32 bytes)")
    return value


class RoomDraft(BaseModel):
    """A room to create; cross-field rules for the gated types are checked here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)
    room_type: RoomType
    description: str = Field("", max_length=2000)
    topic: str | None = Field(None, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    max_participants: int = Field(50, ge=2, le=10000)
    access_token_mint: str | None = Field(None, max_length=64, description="token_gated: the SPL mint")
    min_token_amount: Decimal | None = Field(
        None, gt=0, max_digits=38, decimal_places=9,
        description="token_gated: minimum holding in whole tokens (decimals applied by the server)")
    access_nft_collection: str | None = Field(None, max_length=64,
                                              description="nft_gated: the collection address")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str] | None:
        return _clean_tags(value)

    @field_validator("access_token_mint", "access_nft_collection")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return _check_address(value)

    @model_validator(mode="after")
    def _gating_fields(self) -> RoomDraft:
        wanted = {"token_gated": {"access_token_mint", "min_token_amount"},
                  "nft_gated": {"access_nft_collection"}}.get(self.room_type, set())
        for name in ("access_token_mint", "min_token_amount", "access_nft_collection"):
            given = getattr(self, name) is not None
            if name in wanted and not given:
                raise ValueError(f"a {self.room_type} room requires {name}")
            if given and name not in wanted:
                raise ValueError(f"{name} does not apply to a {self.room_type} room")
        return self


class RoomChanges(BaseModel):
    """What an owner may change; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    topic: str | None = Field(None, max_length=100)
    tags: list[str] | None = Field(None, max_length=MAX_TAGS)
    max_participants: int | None = Field(None, ge=2, le=10000)
    focus_open: bool | None = Field(None, description="let any member control the focus timer")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return _clean_tags(value)

    @model_validator(mode="after")
    def _no_nulls(self) -> RoomChanges:
        for name in ("name", "tags", "max_participants", "focus_open"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if "description" in self.model_fields_set and self.description is None:
            self.description = ""
        return self


class RoomFilter(BaseModel):
    """List filters; `cursor` is the opaque `next_cursor` of the previous page."""

    model_config = ConfigDict(extra="forbid")
    q: str | None = Field(None, max_length=100, description="case-insensitive name search")
    room_type: RoomType | None = None
    tag: str | None = Field(None, max_length=32)
    mine: bool = Field(False, description="only rooms I am a member of")
    include_closed: bool = False
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200)


class StoredMessage(BaseModel):
    id: str
    seq: int
    user_id: str | None
    username: str | None
    kind: str
    text: str = Field(description="empty for a deleted message")
    reply_to: str | None
    client_msg_id: str | None
    created_at: str
    pinned: bool
    deleted: bool
    reactions: dict[str, int]
    metadata: dict[str, Any]


class MessagePage(BaseModel):
    messages: list[StoredMessage]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page; null at the end")
    last_seq: int = Field(description="the room's current seq (every durable event, not only messages)")

"""The library's data: documents, ingestion jobs, shares, search pages and highlights as the
services return them, and what they are asked (changes, share targets, queries, highlight
drafts), validated here so every caller gets the same 400 `validation_error` rules.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roomserver.values import clean_tags

Permission = Literal["read", "write", "admin"]
MAX_TAGS = 20


class Document(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    filename: str
    content_type: str
    size_bytes: int
    content_hash: str | None = Field(description="SHA-256 of the bytes; for the owner only (null for others)")
    blob_cid: str | None = Field(description="CID of the bytes in the private store; for the owner only (null "
                                             "for others). Never served by /ipfs: download through the API")
    page_count: int | None
    is_public: bool
    tags: list[str]
    status: str
    download_count: int
    created_at: datetime
    updated_at: datetime


class Job(BaseModel):
    id: uuid.UUID
    document_id: uuid.UUID
    status: str
    progress: float
    reason: str | None = Field(description="failure code when status is failed")
    message: str | None = Field(description="human-readable failure")
    attempts: int
    chunk_count: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class Share(BaseModel):
    id: uuid.UUID
    document_id: uuid.UUID
    user_id: uuid.UUID | None
    room_id: uuid.UUID | None
    permission: Permission
    granted_by: uuid.UUID
    expires_at: datetime | None
    created_at: datetime


class DocumentChanges(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    title: str | None = Field(None, min_length=1, max_length=300)
    tags: list[str] | None = Field(None, max_length=MAX_TAGS)
    is_public: bool | None = None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else clean_tags(value, most=MAX_TAGS)

    @model_validator(mode="after")
    def _something(self) -> DocumentChanges:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, tags, is_public")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class ShareTarget(BaseModel):
    """Exactly one of `user_id` or `room_id`."""

    model_config = ConfigDict(extra="forbid")
    user_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ShareTarget:
        if (self.user_id is None) == (self.room_id is None):
            raise ValueError("give exactly one of user_id or room_id")
        return self


class ShareRequest(ShareTarget):
    permission: Permission = "read"
    expires_at: datetime | None = Field(None, description="ISO 8601 with a time zone; must be in the future")

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. ...Z)")
        return value


class LibraryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str | None = Field(None, max_length=500, description="plain-language search; absent: list by recency")
    room_id: uuid.UUID | None = Field(None, description="only documents shared to this room (you must be a member)")
    tags: list[str] | None = Field(None, description="comma-separated or repeated; documents with every tag")
    owner: Literal["me"] | None = None
    cursor: str | None = Field(None, max_length=300)
    limit: int = Field(20, ge=1, le=50)

    @field_validator("tags", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            value = [part for item in value for part in str(item).split(",") if part.strip()]
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return clean_tags(value, most=MAX_TAGS) if value else None


class SearchResult(BaseModel):
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    title: str
    text: str
    page_start: int
    page_end: int
    score: float


class LibraryPage(BaseModel):
    """With `q`: `results` are passages (SearchResult). Without: documents (Document)."""

    results: list[SearchResult] | list[Document]
    next_cursor: str | None


class Rect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    y: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    width: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    height: float = Field(ge=0, le=1e6, allow_inf_nan=False)


class Position(Rect):
    """The bounding box on the page, plus one rectangle per line when the client has them."""

    rects: list[Rect] = Field(default_factory=list, max_length=200)


class HighlightDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=5000)
    context_before: str = Field("", max_length=1000)
    context_after: str = Field("", max_length=1000)
    page: int | None = Field(None, ge=1, le=100_000)
    position: Position | None = None
    room_id: uuid.UUID | None = None
    color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    note: str | None = Field(None, max_length=2000)


class Highlight(BaseModel):
    id: uuid.UUID
    document_id: uuid.UUID
    room_id: uuid.UUID | None
    user_id: uuid.UUID
    text: str
    context_before: str
    context_after: str
    page: int | None
    position: dict[str, Any]
    color: str | None
    note: str | None
    created_at: datetime


class HighlightList(BaseModel):
    highlights: list[Highlight]

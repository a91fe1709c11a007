"""Values clients send or hand back, parsed in one place: ids, tags and page cursors.

- `as_uuid`: an id that is not a UUID names nothing, so it is the same typed 404 (with the
  caller's code) as an unknown one.
- `clean_tags`: lower-case, trimmed, inner whitespace collapsed, de-duplicated in order; 1-32
  letters, digits, spaces or `. + # - _`, starting with a letter or digit. ValueError otherwise,
  so a pydantic validator turns it into 400 `validation_error`.
- Cursors are opaque to clients: URL-safe base64 (unpadded) of a small JSON object. A keyset
  cursor holds the last row's (created_at, id), an offset cursor a row count. Decoding anything
  this server did not issue is 400 `invalid_cursor`.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from roomserver import errors

TAG = re.compile(r"^[\w][\w .+#-]{0,31}$")


def as_uuid(value: str | uuid.UUID, code: str, what: str) -> uuid.UUID:
    """A client-supplied id as a UUID; anything else is 404 `code` ("no such `what`")."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise errors.NotFound(f"no such {what}", code=code) from None


def uuid_or_none(value: str) -> uuid.UUID | None:
    """`value` as a UUID, or None when it is not one."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


def clean_tags(tags: Sequence[str], *, most: int) -> list[str]:
    """Tags in their one stored form (see the module docstring); ValueError for a bad tag or
    more than `most` distinct ones."""
    seen: dict[str, None] = {}
    for raw in tags:
        tag = re.sub(r"\s+", " ", raw.strip().lower())
        if not TAG.match(tag):
            raise ValueError(f"invalid tag {raw[:40]!r}: 1-32 letters, digits, spaces or . + # - _")
        seen[tag] = None
    if len(seen) > most:
        raise ValueError(f"at most {most} tags")
    return list(seen)


def encode_keyset(created_at: datetime, row_id: uuid.UUID) -> str:
    """A cursor for the rows after (`created_at`, `row_id`) in descending order."""
    return _encode({"before": [created_at.isoformat(), str(row_id)]})


def decode_keyset(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position `encode_keyset` wrote (a time-zone-aware datetime and an id)."""
    value = _decode(cursor).get("before")
    try:
        created, row_id = value  # type: ignore[misc]
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive datetime")
        return when, uuid.UUID(row_id)
    except (TypeError, ValueError, AttributeError):
        raise invalid_cursor() from None


def encode_offset(offset: int) -> str:
    """A cursor for the rows from `offset` on (for orders a keyset cannot express, e.g. rank)."""
    return _encode({"offset": offset})


def decode_offset(cursor: str, *, most: int) -> int:
    """The offset `encode_offset` wrote, when it is within [0, `most`]."""
    offset = _decode(cursor).get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= most:
        raise invalid_cursor()
    return offset


def invalid_cursor() -> errors.BadRequest:
    return errors.BadRequest("the cursor is not one this server issued", code="invalid_cursor")


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise invalid_cursor() from None
    if not isinstance(data, dict):
        raise invalid_cursor()
    return data

"""Highlights: a passage of a document a reader marks, checked against the document's text.

A highlight is accepted only when its `text` occurs in the ingested document (comparison
ignores differences in whitespace and Unicode normal form):
- 409 `document_not_ready` before ingestion finished (there is no text to check against);
- 400 `highlight_not_in_document` when the text occurs nowhere;
- 400 `highlight_not_on_page` when `page` is given and no occurrence touches that page
  (details.found_on_pages lists where it does occur);
- 400 `highlight_context_mismatch` when `context_before` / `context_after` are given and no
  occurrence is preceded / followed by them (their nearest 100 characters are compared).
With `room_id` the author must be a current member of the room (403 `not_member`) and the
document must be readable there: shared to the room or public (403 `document_not_in_room`);
the highlight then goes to the `on_created(room_id, payload, actor_id)` hook, which the app
wires to `highlight_created` on the room.

Who sees which highlights: a reader of the document sees their own, and those made in rooms
where they are a current member.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from roomserver import errors
from roomserver.identity import users
from roomserver.library.documents import Library, Membership
from roomserver.library.models import Highlight, HighlightDraft

OnHighlight = Callable[[uuid.UUID, dict[str, Any], uuid.UUID], Awaitable[None]]
CONTEXT_CHARS = 100
MAX_OCCURRENCES = 1000


async def no_on_highlight(room_id: uuid.UUID, highlight: dict[str, Any], actor_id: uuid.UUID) -> None:
    return None


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


@dataclass(frozen=True)
class PagedText:
    """A document's normalised text, pages joined by one space, with each page's start."""

    text: str
    starts: list[int]  # starts[i] is where page i+1 begins in `text`

    @classmethod
    def of(cls, pages: Sequence[str]) -> PagedText:
        starts, parts, at = [], [], 0
        for page in pages:
            clean = normalise(page)
            starts.append(at)
            parts.append(clean)
            at += len(clean) + 1
        return cls(" ".join(parts), starts)

    def page_at(self, offset: int) -> int:
        page = 1
        for number, start in enumerate(self.starts, start=1):
            if start <= offset:
                page = number
        return page

    def occurrences(self, needle: str) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        at = self.text.find(needle)
        while at >= 0 and len(found) < MAX_OCCURRENCES:
            found.append((at, at + len(needle)))
            at = self.text.find(needle, at + 1)
        return found


def locate(paged: PagedText, draft: HighlightDraft) -> int:
    """The page of the first occurrence matching the draft; raises the typed refusal."""
    needle = normalise(draft.text)
    if not needle:
        raise errors.BadRequest("the highlighted text is blank", code="validation_error")
    spans = paged.occurrences(needle)
    if not spans:
        raise errors.BadRequest("the highlighted text does not occur in the document",
                                code="highlight_not_in_document")
    before = normalise(draft.context_before)[-CONTEXT_CHARS:]
    after = normalise(draft.context_after)[:CONTEXT_CHARS]
    in_context = [(s, e) for s, e in spans
                  if (not before or paged.text[:s].rstrip().endswith(before))
                  and (not after or paged.text[e:].lstrip().startswith(after))]
    if not in_context:
        raise errors.BadRequest("the text around the highlight does not match the document",
                                code="highlight_context_mismatch")
    if draft.page is None:
        return paged.page_at(in_context[0][0])
    for start, end in in_context:
        if paged.page_at(start) <= draft.page <= paged.page_at(max(start, end - 1)):
            return draft.page
    pages = sorted({paged.page_at(s) for s, _ in in_context})
    raise errors.BadRequest(f"the highlighted text is not on page {draft.page}",
                            code="highlight_not_on_page", details={"found_on_pages": pages[:20]})


class Highlights:
    def __init__(self, pool: asyncpg.Pool, library: Library, *, membership: Membership,
                 on_created: OnHighlight = no_on_highlight) -> None:
        self._pool = pool
        self._library = library
        self._membership = membership
        self.on_created = on_created

    async def create(self, document_id: uuid.UUID, user_id: uuid.UUID, draft: HighlightDraft) -> Highlight:
        doc = await self._library.get(document_id, user_id)
        if doc.status != "ready":
            raise errors.Conflict("the document is still being ingested", code="document_not_ready")
        if draft.room_id is not None:
            await self._check_room(document_id, draft.room_id, user_id)
        pages = await self._pool.fetch(
            "SELECT text FROM document_pages WHERE document_id = $1 ORDER BY page_number", document_id)
        page = locate(PagedText.of([row["text"] for row in pages]), draft)
        position = draft.position.model_dump() if draft.position else {}
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO highlights (document_id, room_id, user_id, text, context_before,
                       context_after, page, position, color, note)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
                document_id, draft.room_id, user_id, draft.text, draft.context_before,
                draft.context_after, page, position, draft.color, draft.note)
            await users.audit(conn, user_id, "highlight.create", "document", document_id,
                              {"highlight_id": str(row["id"])})
        highlight = Highlight(**dict(row))
        if draft.room_id is not None:
            payload = highlight.model_dump(mode="json") | {"document_title": doc.title}
            await self.on_created(draft.room_id, payload, user_id)
        return highlight

    async def _check_room(self, document_id: uuid.UUID, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        if await self._membership(room_id, user_id) is None:
            raise errors.Forbidden("you are not a member of that room", code="not_member")
        visible = await self._pool.fetchval(
            """SELECT d.is_public OR EXISTS (SELECT 1 FROM document_permissions p
                   WHERE p.document_id = d.id AND p.room_id = $2
                     AND (p.expires_at IS NULL OR p.expires_at > now()))
               FROM documents d WHERE d.id = $1""", document_id, room_id)
        if not visible:
            raise errors.Forbidden("the document is not shared to that room", code="document_not_in_room")

    async def list(self, document_id: uuid.UUID, user_id: uuid.UUID,
                   room_id: uuid.UUID | None = None) -> list[Highlight]:
        await self._library.get(document_id, user_id)
        rows = await self._pool.fetch(
            """SELECT h.* FROM highlights h
               WHERE h.document_id = $1 AND ($3::uuid IS NULL OR h.room_id = $3)
                 AND (h.user_id = $2 OR h.room_id IN (SELECT rp.room_id FROM room_participants rp
                      WHERE rp.user_id = $2 AND rp.is_member AND NOT rp.is_banned))
               ORDER BY h.created_at, h.id LIMIT 1000""", document_id, user_id, room_id)
        return [Highlight(**dict(row)) for row in rows]

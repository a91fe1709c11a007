"""Highlights: a passage of a document a reader marks, checked against the document's text.

`Highlights.check` is the ONE validation, used by REST (`POST .../highlights`) and by the
socket's `highlight_create` alike. A highlight is accepted only when:
- the author may read the document (404 `document_not_found` otherwise);
- ingestion finished (409 `document_not_ready`: there is no text to check against);
- with a room: the author is a current member (403 `not_member`) and the document is
  readable there, shared to the room (unexpired) or public (403 `document_not_in_room`);
- its `text` occurs in the ingested pages (comparison ignores differences in whitespace and
  Unicode normal form): 400 `highlight_not_in_document`; with `page`, an occurrence touches
  that page (400 `highlight_not_on_page`, details.found_on_pages); with `context_before` /
  `context_after`, an occurrence is preceded / followed by them (their nearest 100
  characters; 400 `highlight_context_mismatch`).
Every stored highlight is audited (`highlight.create`) in the transaction that writes it.
A room highlight's row is written inside the room's durable write (`in_room`, the node's
`History`), so the row, its audit and its `highlight_created` event commit together.

The text work (normalising every page, searching it) runs in a worker thread, never on the
event loop; a document's normalised text is cached per version (`PageTexts`).

Who sees which highlights: a reader of the document sees their own, and those made in rooms
where they are a current member.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from roomserver import errors
from roomserver.achievements import OnEvent, no_event
from roomserver.identity import users
from roomserver.library.documents import Library, Membership
from roomserver.library.models import Document, Highlight, HighlightDraft
from roomserver.protocol import HighlightCreate
from roomserver.values import as_uuid

RowWriter = Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]]
"""Writes a checked highlight's row and audit on the given connection (inside the caller's
transaction); returns the fields of the `highlight_created` event's `highlight`."""
InRoom = Callable[[uuid.UUID, uuid.UUID, RowWriter], Awaitable[object]]
"""(room_id, actor_id, write_row): run `write_row` inside the room's durable write and announce
the event (the node's `highlight_created`)."""
CONTEXT_CHARS = 100
MAX_OCCURRENCES = 1000


async def no_room_events(room_id: uuid.UUID, actor_id: uuid.UUID, write_row: RowWriter) -> None:
    """For a library wired to no rooms: room highlights are refused."""
    raise errors.Unavailable("room highlights are not available", code="rooms_unavailable")


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
        return max(1, bisect.bisect_right(self.starts, offset))

    def preceded_by(self, at: int, before: str) -> bool:
        """`text[:at].rstrip().endswith(before)` without copying the text before `at`."""
        end = at
        while end > 0 and self.text[end - 1].isspace():
            end -= 1
        return end >= len(before) and self.text.startswith(before, end - len(before), end)

    def followed_by(self, at: int, after: str) -> bool:
        """`text[at:].lstrip().startswith(after)` without copying the text after `at`."""
        start = at
        while start < len(self.text) and self.text[start].isspace():
            start += 1
        return self.text.startswith(after, start)

    def occurrences(self, needle: str) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        at = self.text.find(needle)
        while at >= 0 and len(found) < MAX_OCCURRENCES:
            found.append((at, at + len(needle)))
            at = self.text.find(needle, at + 1)
        return found


def locate(paged: PagedText, draft: HighlightDraft) -> int:
    """The page of the first occurrence matching the draft; raises the typed refusal.
    CPU-bound on a large document: call it in a worker thread."""
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
                  if (not before or paged.preceded_by(s, before))
                  and (not after or paged.followed_by(e, after))]
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


class PageTexts:
    """Each document's normalised text (`PagedText`), cached per document version.

    Contract: `get` computes a version's text at most once while it stays cached (callers
    asking meanwhile wait for the same computation), in a worker thread; a new version of
    a document replaces the old one; the cache holds at most `max_entries` documents and
    `max_chars` characters in all (least recently used go first; a text larger than
    `max_chars` is computed but not kept). `computed` counts the computations."""

    def __init__(self, *, max_entries: int = 64, max_chars: int = 64_000_000) -> None:
        self.max_entries, self.max_chars = max_entries, max_chars
        self._texts: OrderedDict[uuid.UUID, tuple[datetime, PagedText]] = OrderedDict()
        self._chars = 0
        self._pending: dict[tuple[uuid.UUID, datetime], asyncio.Future[PagedText]] = {}
        self.computed = 0

    async def get(self, document_id: uuid.UUID, version: datetime,
                  load: Callable[[], Awaitable[list[str]]]) -> PagedText:
        """The text of `document_id` at `version`; `load()` fetches its pages when it must."""
        cached = self._texts.get(document_id)
        if cached is not None and cached[0] == version:
            self._texts.move_to_end(document_id)
            return cached[1]
        key = (document_id, version)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._compute(document_id, version, load))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    def _settled(self, key: tuple[uuid.UUID, datetime], done: asyncio.Future[PagedText]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone (cancelled) before it failed

    async def _compute(self, document_id: uuid.UUID, version: datetime,
                       load: Callable[[], Awaitable[list[str]]]) -> PagedText:
        pages = await load()
        self.computed += 1
        paged = await asyncio.to_thread(PagedText.of, pages)
        self._keep(document_id, version, paged)
        return paged

    def _keep(self, document_id: uuid.UUID, version: datetime, paged: PagedText) -> None:
        self._drop(document_id)
        if len(paged.text) > self.max_chars:
            return
        self._texts[document_id] = (version, paged)
        self._chars += len(paged.text)
        while len(self._texts) > self.max_entries or self._chars > self.max_chars:
            self._drop(next(iter(self._texts)))

    def _drop(self, document_id: uuid.UUID) -> None:
        gone = self._texts.pop(document_id, None)
        if gone is not None:
            self._chars -= len(gone[1].text)


@dataclass(frozen=True)
class Checked:
    """A highlight that passed `Highlights.check`: the document, the draft, the page the
    text was found on."""

    document: Document
    draft: HighlightDraft
    page: int


class Highlights:
    def __init__(self, pool: asyncpg.Pool, library: Library, *, membership: Membership,
                 in_room: InRoom = no_room_events, texts: PageTexts | None = None,
                 on_event: OnEvent = no_event) -> None:
        """`on_event` hears `highlight_created` for a highlight made outside a room (a room's
        are reported by the durable write `in_room` makes)."""
        self._pool = pool
        self._on_event = on_event
        self._library = library
        self._membership = membership
        self._in_room = in_room
        self._texts = texts or PageTexts()

    async def check(self, document_id: uuid.UUID, user_id: uuid.UUID, draft: HighlightDraft) -> Checked:
        """The one validation of a highlight (see the module docstring); raises the typed refusal."""
        doc = await self._library.get(document_id, user_id)
        if doc.status != "ready":
            raise errors.Conflict("the document is still being ingested", code="document_not_ready")
        if draft.room_id is not None:
            await self._check_room(document_id, draft.room_id, user_id)
        paged = await self._texts.get(document_id, doc.updated_at, lambda: self._pages(document_id))
        page = await asyncio.to_thread(locate, paged, draft)
        return Checked(doc, draft, page)

    async def _pages(self, document_id: uuid.UUID) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT text FROM document_pages WHERE document_id = $1 ORDER BY page_number", document_id)
        return [row["text"] for row in rows]

    async def create(self, document_id: uuid.UUID, user_id: uuid.UUID, draft: HighlightDraft) -> Highlight:
        """REST: check, then store (a room highlight through `in_room`, with its event)."""
        checked = await self.check(document_id, user_id, draft)
        made: list[Highlight] = []
        write_row = self.row_writer(checked, user_id, made.append)
        if draft.room_id is None:
            async with self._pool.acquire() as conn, conn.transaction():
                await write_row(conn)
            await self._on_event("highlight_created", user_id, None)
        else:
            await self._in_room(draft.room_id, user_id, write_row)
        return made[0]

    async def check_frame(self, room_id: uuid.UUID, user_id: uuid.UUID,
                          frame: HighlightCreate) -> RowWriter:
        """The socket's `highlight_create` in `room_id`: the same `check` as REST; returns the
        row writer for the room's durable write. A frame the REST body would refuse is
        refused with `invalid_frame`."""
        document_id = as_uuid(frame.document_id, "document_not_found", "document")
        try:
            draft = HighlightDraft(text=frame.text, context_before=frame.context_before or "",
                                   context_after=frame.context_after or "", page=frame.page or None,
                                   room_id=room_id)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(part) for part in problem["loc"])
            raise errors.BadRequest(f"{field}: {problem['msg']}", code="invalid_frame") from None
        checked = await self.check(document_id, user_id, draft)
        position = frame.position.model_dump(exclude_none=True) if frame.position else None
        return self.row_writer(checked, user_id, position=position, client_msg_id=frame.client_msg_id)

    def row_writer(self, checked: Checked, user_id: uuid.UUID,
                   made: Callable[[Highlight], object] = lambda _: None, *,
                   position: dict[str, Any] | None = None, client_msg_id: str | None = None) -> RowWriter:
        """The writer of a checked highlight's row and audit; `made` receives the stored
        highlight. `position` (the socket's) overrides the draft's."""
        draft = checked.draft
        where = position if position is not None else (draft.position.model_dump() if draft.position else {})

        async def write_row(conn: asyncpg.Connection) -> dict[str, Any]:
            row = await conn.fetchrow(
                """INSERT INTO highlights (document_id, room_id, user_id, text, context_before,
                       context_after, page, position, color, note)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
                checked.document.id, draft.room_id, user_id, draft.text, draft.context_before,
                draft.context_after, checked.page, where, draft.color, draft.note)
            await users.audit(conn, user_id, "highlight.create", "document", checked.document.id,
                              {"highlight_id": str(row["id"]),
                               "room_id": None if draft.room_id is None else str(draft.room_id)})
            highlight = Highlight(**dict(row))
            made(highlight)
            return event_fields(highlight, checked.document.title, client_msg_id)

        return write_row

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


def event_fields(highlight: Highlight, title: str, client_msg_id: str | None) -> dict[str, Any]:
    """The `highlight` of a `highlight_created` event: the stored highlight, the document's
    title, and the socket frame's `client_msg_id` (its idempotency key); no empty position."""
    fields = highlight.model_dump(mode="json") | {"document_title": title}
    if client_msg_id is not None:
        fields["client_msg_id"] = client_msg_id
    if not fields["position"]:
        del fields["position"]
    return fields

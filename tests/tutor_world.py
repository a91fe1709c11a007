"""Rooms, users and documents for the tutor's tests. Users and rooms come from the services
(tests.world); documents are written straight into the database (see `add_document`).

Documents get real chunks with real MiniLM embeddings and are shared to rooms by the library's
`share`, so retrieval runs the library's real scoped search.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from roomserver.library.documents import Library
from roomserver.library.embeddings import Embedder
from roomserver.library.models import ShareRequest
from roomserver.realtime.history import History
from roomserver.rooms import RoomService
from roomserver.store.blobstore import MemoryBlobStore
from roomserver.tutor import Stored
from tests import world


async def add_user(pool: asyncpg.Pool) -> uuid.UUID:
    """A signed-up user (through `tests.world`)."""
    user, _ = await world.add_user(pool)
    return user


add_room = world.add_room  # a public room of `owner` joined by `members`, through RoomService


async def add_document(pool: asyncpg.Pool, embedder: Embedder, owner: uuid.UUID, title: str,
                       pages: Sequence[tuple[int, str]], *, rooms: Sequence[uuid.UUID] = (),
                       public: bool = False) -> uuid.UUID:
    """A ready document with one chunk per (page number, text), shared to `rooms`.

    Written as rows on purpose (a forged state): the tutor's tests need chunks with exact
    boundaries on chosen page numbers (pages 13-15 of a textbook) so that retrieval, scoping
    and citations are asserted exactly; ingestion would choose its own pages and chunk
    boundaries. Sharing goes through the library. Upload and ingestion are tested through the services in test_ingest.py and
    test_library_api.py (and tests.world.Shelf makes service-built documents)."""
    body = "\n".join(text for _, text in pages).encode()
    digest = hashlib.sha256(body + secrets.token_bytes(8)).hexdigest()
    doc_id: uuid.UUID = await pool.fetchval(
        """INSERT INTO documents (owner_id, title, filename, content_type, size_bytes, content_hash,
               blob_cid, page_count, is_public, status)
           VALUES ($1, $2, $3, 'text/plain', $4, $5, $6, $7, $8, 'ready') RETURNING id""",
        owner, title, f"{title}.txt", len(body), digest, f"b{digest[:20]}", max(p for p, _ in pages), public)
    vectors = await embedder.embed([text for _, text in pages])
    offset = 0
    for index, ((page, text), vector) in enumerate(zip(pages, vectors, strict=True)):
        await pool.execute(
            """INSERT INTO document_chunks (document_id, chunk_index, text, page_start, page_end,
                   char_start, char_end, token_count, embedding, embedding_model)
               VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)""",
            doc_id, index, text, page, offset, offset + len(text), len(text.split()), vector,
            embedder.model_id)
        offset += len(text) + 1
    library = Library(pool, MemoryBlobStore(), embedder, membership=RoomService(pool).membership)
    for room in rooms:  # shared as the owner shares it over REST
        await library.share(doc_id, owner, ShareRequest(room_id=room))
    return doc_id


class HistoryFinalStore:
    """The tutor's durable write as production does it: the real `History.post_tutor`
    (without publishing: these tests have no node)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.history = History(pool, group_commit=False)

    async def __call__(self, room_id: uuid.UUID, user_id: uuid.UUID, text: str,
                       metadata: dict[str, Any]) -> Stored:
        written = await self.history.post_tutor(room_id, user_id, text, metadata)
        assert written.seq is not None and written.message_id is not None
        return Stored(written.message_id, written.seq)


ENZYME_PAGES = [
    (13, "Enzymes are proteins that speed up chemical reactions in cells. Each enzyme has an "
         "active site that binds a specific substrate."),
    (14, "At high temperature an enzyme stops working because heat breaks the weak bonds that hold "
         "its folded shape. The active site loses its shape, the substrate no longer fits, and the "
         "enzyme is denatured. Denaturation is usually irreversible."),
    (15, "Photosynthesis in plants converts light energy, water and carbon dioxide into glucose and "
         "oxygen inside the chloroplasts."),
]

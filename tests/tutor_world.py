"""Rooms, users and documents for the tutor's tests, written straight into the database.

Documents get real chunks with real MiniLM embeddings and are shared to rooms through
`document_permissions`, so retrieval runs the library's real scoped search.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from roomserver.library.embeddings import Embedder
from roomserver.realtime.history import History
from roomserver.tutor import Stored


async def add_user(pool: asyncpg.Pool) -> uuid.UUID:
    user_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO users (wallet_address) VALUES ($1) RETURNING id", secrets.token_hex(16))
    return user_id


async def add_room(pool: asyncpg.Pool, owner: uuid.UUID, *members: uuid.UUID) -> uuid.UUID:
    room_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO study_rooms (name, room_type, owner_id) VALUES ($1, 'public', $2) RETURNING id",
        f"room {secrets.token_hex(3)}", owner)
    await pool.execute("INSERT INTO room_participants (room_id, user_id, role) VALUES ($1, $2, 'owner')",
                       room_id, owner)
    for member in members:
        await pool.execute("INSERT INTO room_participants (room_id, user_id) VALUES ($1, $2)", room_id, member)
    return room_id


async def add_document(pool: asyncpg.Pool, embedder: Embedder, owner: uuid.UUID, title: str,
                       pages: Sequence[tuple[int, str]], *, rooms: Sequence[uuid.UUID] = (),
                       public: bool = False) -> uuid.UUID:
    """A ready document with one chunk per (page number, text), shared to `rooms`."""
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
                   char_start, char_end, token_count, embedding)
               VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)""",
            doc_id, index, text, page, offset, offset + len(text), len(text.split()), vector)
        offset += len(text) + 1
    for room in rooms:
        await pool.execute(
            "INSERT INTO document_permissions (document_id, room_id, granted_by) VALUES ($1, $2, $3)",
            doc_id, room, owner)
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

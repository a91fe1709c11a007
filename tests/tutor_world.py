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


class SqlFinalStore:
    """The durable write path as the room history does it: next room seq, a `tutor` chat
    message and its room event, in one transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def __call__(self, room_id: uuid.UUID, user_id: uuid.UUID, text: str,
                       metadata: dict[str, Any]) -> Stored:
        async with self.pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(
                "UPDATE study_rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", room_id)
            message_id = await conn.fetchval(
                """INSERT INTO chat_messages (room_id, seq, sender_id, message_type, content, metadata)
                   VALUES ($1, $2, NULL, 'tutor', $3, $4) RETURNING id""", room_id, seq, text, metadata)
            await conn.execute(
                """INSERT INTO room_events (room_id, seq, event_type, actor_id, payload)
                   VALUES ($1, $2, 'new_message', $3, $4)""",
                room_id, seq, user_id, {"message_id": str(message_id), "text": text, "metadata": metadata})
        return Stored(str(message_id), seq)


ENZYME_PAGES = [
    (13, "Enzymes are proteins that speed up chemical reactions in cells. Each enzyme has an "
         "active site that binds a specific substrate."),
    (14, "At high temperature an enzyme stops working because heat breaks the weak bonds that hold "
         "its folded shape. The active site loses its shape, the substrate no longer fits, and the "
         "enzyme is denatured. Denaturation is usually irreversible."),
    (15, "Photosynthesis in plants converts light energy, water and carbon dioxide into glucose and "
         "oxygen inside the chloroplasts."),
]

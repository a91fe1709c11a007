"""Users, rooms, documents and highlights made through the product's own services, for tests that
work on an asyncpg pool below HTTP. What these return is what sign-in, room creation and joining,
upload and ingestion, sharing and highlighting produce; no table is written here directly.

Documents are PDFs built from the given page texts, ingested by a real `Ingestor` (with the
hashing embedder unless one is given) into a memory blob store.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import uuid
from collections.abc import Sequence

import asyncpg

from roomserver.identity import users
from roomserver.identity.wallet import Wallet
from roomserver.library.documents import Library
from roomserver.library.embeddings import Embedder, HashingEmbedder
from roomserver.library.highlights import Highlights, RowWriter
from roomserver.library.ingest import Ingestor
from roomserver.library.models import HighlightDraft, ShareRequest
from roomserver.realtime.history import History
from roomserver.rooms import RoomDraft, RoomService
from roomserver.store.blobstore import MemoryBlobStore
from tests import pdfs


async def add_user(pool: asyncpg.Pool) -> tuple[uuid.UUID, str]:
    """A user as a first wallet sign-in creates one; returns (user id, wallet address)."""
    wallet = Wallet.generate().address
    user, _ = await users.upsert_by_wallet(pool, wallet)
    return user.id, wallet


async def add_room(pool: asyncpg.Pool, owner: uuid.UUID, *members: uuid.UUID,
                   name: str | None = None) -> uuid.UUID:
    """A public room created by `owner`, joined by each of `members`."""
    rooms = RoomService(pool)
    room = await rooms.create(owner, RoomDraft(name=name or f"room {secrets.token_hex(3)}",
                                               room_type="public"))
    for member in members:
        await join(pool, room.id, member)
    return room.id


async def join(pool: asyncpg.Pool, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """`user_id` joins the room as the REST join does."""
    user = await users.get(pool, user_id)
    await RoomService(pool).admit(user_id, user.wallet_address, room_id)


class Shelf:
    """The library's services over one pool: upload and ingest, share, highlight."""

    def __init__(self, pool: asyncpg.Pool, embedder: Embedder | None = None) -> None:
        self.pool = pool
        self.blobs = MemoryBlobStore()
        self.embedder = embedder or HashingEmbedder()
        rooms = RoomService(pool)
        self.library = Library(pool, self.blobs, self.embedder, membership=rooms.membership)
        self.history = History(pool, group_commit=False)
        self.highlights = Highlights(pool, self.library, membership=rooms.membership,
                                     in_room=self._in_room)

    async def _in_room(self, room_id: uuid.UUID, actor_id: uuid.UUID, write_row: RowWriter) -> None:
        await self.history.create_highlight(room_id, actor_id, write_row)  # no node: not published

    async def document(self, owner: uuid.UUID, pages: Sequence[str], *, title: str = "Notes",
                       rooms: Sequence[uuid.UUID] = (), is_public: bool = False) -> uuid.UUID:
        """A ready document (a PDF of `pages`, uploaded and ingested), shared to `rooms`."""
        pdf = pdfs.simple_pdf(list(pages)) + b"%" + secrets.token_hex(8).encode() + b"\n"  # unique bytes
        upload = await self.library.upload(owner, io.BytesIO(pdf), f"{title}.pdf", title=title,
                                           is_public=is_public)
        await self._ingest(upload.job.id, owner)
        for room in rooms:
            await self.library.share(upload.document.id, owner, ShareRequest(room_id=room))
        return upload.document.id

    async def _ingest(self, job_id: uuid.UUID, owner: uuid.UUID) -> None:
        ingestor = Ingestor(self.pool, self.blobs, self.embedder, poll_seconds=0.05)
        ingestor.start()
        try:
            async with asyncio.timeout(120):
                while (job := await self.library.job(job_id, owner)).status not in ("ready", "failed"):
                    await asyncio.sleep(0.05)
        finally:
            await ingestor.close()
        assert job.status == "ready", job

    async def highlight(self, document_id: uuid.UUID, author: uuid.UUID, text: str, *,
                        room_id: uuid.UUID | None = None, **draft: object) -> uuid.UUID:
        """A highlight as the REST create makes it (checked against the document's text)."""
        made = await self.highlights.create(
            document_id, author, HighlightDraft(text=text, room_id=room_id, **draft))  # type: ignore[arg-type]
        return made.id

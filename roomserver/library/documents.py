"""The document library: uploads, details, downloads, tags, deletion, sharing, permissions.

Who may do what with a document (never revealing a document to someone who may not read it:
those get 404 `document_not_found`, exactly as for an unknown id):
- read (details, download, highlights): the owner, anyone when it is public, a user it is
  shared to, a current (not banned) member of a room it is shared to; expired shares count
  for nothing. Deleted documents are gone for everyone.
- change title/tags/is_public, delete: the owner only (403 `not_owner` for other readers).
- share/revoke: the owner, or a holder of an `admin` permission; sharing to a room also
  requires being a current member of that room (403 `not_member`).

Upload: the type comes from the bytes (sniff.py); the same content uploaded again by the
same owner returns the existing document and its latest job (`duplicate: true`). Uploads
count against the owner's `Quotas` (live documents, their bytes, unfinished jobs), checked
under a per-owner lock so concurrent uploads cannot pass them.

Blobs: uploads live in the private store (never served by /ipfs), reached only through
`download` after the read check. Content addresses (`content_hash`, `blob_cid`) are shown
to the owner only. A blob no live document references is deleted: at once when its last
document is deleted, and by `sweep_blobs` (orphans of interrupted uploads). Putting a blob
and recording its document, and deciding a blob is unreferenced and deleting it, each hold
the same per-CID advisory lock, so a delete never races an upload of the same bytes.
Deletion of a document is soft: the row stays (status `deleted`) for the audit trail, its
chunks, page texts and shares go at once.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal

import asyncpg

from roomserver import errors
from roomserver.achievements import OnEvent, no_event
from roomserver.identity import users
from roomserver.library.embeddings import Embedder
from roomserver.library.models import (
    MAX_TAGS,
    Document,
    DocumentChanges,
    Job,
    LibraryPage,
    LibraryQuery,
    SearchResult,
    Share,
    ShareRequest,
    ShareTarget,
)
from roomserver.library.search import Params, Scope, search, user_may_read
from roomserver.library.sniff import SNIFF_BYTES, sanitize_filename, sniff
from roomserver.store.blobstore import BlobStore
from roomserver.store.cid import cid_from_digest
from roomserver.values import clean_tags, decode_keyset, decode_offset, encode_keyset, encode_offset

Access = Literal["owner", "admin", "write", "read"]
OnShared = Callable[[uuid.UUID, dict[str, Any], uuid.UUID], Awaitable[None]]
Membership = Callable[[uuid.UUID, uuid.UUID], Awaitable[object | None]]
HASH_CHUNK = 1 << 20
MAX_SEARCH_OFFSET = 200
BLOB_LOCK = 0x626C6F62  # "blob": advisory lock class of (BLOB_LOCK, hashtext(cid))
OWNER_LOCK = 0x6F776E72  # "ownr": advisory lock class of (OWNER_LOCK, hashtext(owner id))
PENDING_RETRY_SECONDS = 10.0
SWEEP_BATCH = 500
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quotas:
    """Per-user limits on uploads (LIBRARY_MAX_DOCUMENTS, LIBRARY_MAX_BYTES, LIBRARY_MAX_PENDING_JOBS)."""

    max_documents: int = 500
    max_bytes: int = 1 << 30
    max_pending_jobs: int = 20


async def no_on_shared(room_id: uuid.UUID, document: dict[str, Any], actor_id: uuid.UUID) -> None:
    return None


@dataclass(frozen=True)
class Upload:
    document: Document
    job: Job
    duplicate: bool


_DOC = """d.id, d.owner_id, d.title, d.filename, d.content_type, d.size_bytes, d.content_hash,
    d.blob_cid, d.page_count, d.is_public, d.tags, d.status, d.download_count, d.created_at,
    d.updated_at"""
_JOB = """j.id, j.document_id, j.status, j.progress, j.reason, j.error_message AS message,
    j.attempts, j.chunk_count, j.created_at, j.updated_at, j.finished_at"""
_RANK = {"read": 1, "write": 2, "admin": 3, "owner": 4}


def not_found() -> errors.NotFound:
    return errors.NotFound("no such document", code="document_not_found")


class Library:
    def __init__(self, pool: asyncpg.Pool, blobs: BlobStore, embedder: Embedder | None, *,
                 membership: Membership, wake_ingest: Callable[[], None] = lambda: None,
                 on_shared: OnShared = no_on_shared, quotas: Quotas = Quotas(),
                 on_event: OnEvent = no_event) -> None:
        """`blobs` is the private store (uploads); nothing else may serve it. `on_event` hears
        `document_uploaded` (the owner) for each new document, not for a duplicate."""
        self._pool = pool
        self._on_event = on_event
        self._blobs = blobs
        self._quotas = quotas
        self._embedder = embedder
        self._membership = membership
        self._wake = wake_ingest
        self.on_shared = on_shared

    # -- upload -------------------------------------------------------------------------------

    async def upload(self, owner_id: uuid.UUID, file: BinaryIO, filename: str | None, *,
                     title: str | None = None, tags: Sequence[str] = (), is_public: bool = False) -> Upload:
        """Store a file (a seekable binary file, e.g. a spooled temporary file) and queue its job."""
        size, head, digest = await asyncio.to_thread(_measure, file)
        if size == 0:
            raise errors.BadRequest("the file is empty", code="empty_file")
        kind = sniff(head, filename, complete=size <= len(head))
        name = sanitize_filename(filename or "")
        title = (title or "").strip() or _title_from(name)
        if len(title) > 300:
            raise errors.BadRequest("title is longer than 300 characters", code="validation_error")
        tags = _tags_or_400(tags)
        existing = await self._existing(owner_id, digest)
        if existing is not None:
            return existing
        cid = cid_from_digest(bytes.fromhex(digest))
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", OWNER_LOCK, str(owner_id))
                await self._check_quotas(conn, owner_id, size)
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", BLOB_LOCK, cid)
                await asyncio.to_thread(file.seek, 0)
                if await self._blobs.put_file(file, kind.content_type) != cid:
                    raise RuntimeError("the blob store's CID disagrees with the upload's SHA-256")
                doc = await conn.fetchrow(
                    f"""INSERT INTO documents AS d (owner_id, title, filename, content_type, size_bytes,
                            content_hash, blob_cid, is_public, tags)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_DOC}""",
                    owner_id, title, name, kind.content_type, size, digest, cid, is_public, tags)
                job = await conn.fetchrow(
                    f"INSERT INTO ingestion_jobs AS j (document_id) VALUES ($1) RETURNING {_JOB}", doc["id"])
                await users.audit(conn, owner_id, "document.upload", "document", doc["id"],
                                  {"content_hash": digest, "size_bytes": size, "filename": name})
        except asyncpg.UniqueViolationError:
            found = await self._existing(owner_id, digest)  # the same file, uploaded concurrently
            if found is None:
                raise
            return found
        self._wake()
        await self._on_event("document_uploaded", owner_id, None)
        return Upload(Document(**dict(doc)), Job(**dict(job)), duplicate=False)

    async def _check_quotas(self, conn: asyncpg.Connection, owner_id: uuid.UUID, size: int) -> None:
        """429 `upload_quota_exceeded` / `too_many_pending_jobs`, 413 `storage_quota_exceeded`,
        each with the limit in `details`."""
        q = self._quotas
        row = await conn.fetchrow(
            """SELECT count(*) AS documents, coalesce(sum(size_bytes), 0)::bigint AS bytes,
                      (SELECT count(*) FROM ingestion_jobs j JOIN documents o ON o.id = j.document_id
                       WHERE o.owner_id = $1 AND o.deleted_at IS NULL
                         AND j.status IN ('pending', 'extracting', 'embedding')) AS pending
               FROM documents WHERE owner_id = $1 AND deleted_at IS NULL""", owner_id)
        if row["documents"] >= q.max_documents:
            raise errors.QuotaExceeded(
                f"your library holds the most documents allowed ({q.max_documents}); delete some first",
                code="upload_quota_exceeded", details={"limit": q.max_documents, "used": row["documents"]})
        if row["bytes"] + size > q.max_bytes:
            raise errors.PayloadTooLarge(
                f"this upload would take your library past {q.max_bytes} bytes",
                code="storage_quota_exceeded",
                details={"limit": q.max_bytes, "used": row["bytes"], "size": size})
        if row["pending"] >= q.max_pending_jobs:
            raise errors.RateLimited(
                f"you have {row['pending']} documents waiting to be ingested; upload more once they finish",
                code="too_many_pending_jobs", retry_after=PENDING_RETRY_SECONDS,
                details={"limit": q.max_pending_jobs, "pending": row["pending"]})

    async def _existing(self, owner_id: uuid.UUID, digest: str) -> Upload | None:
        row = await self._pool.fetchrow(
            f"SELECT {_DOC} FROM documents d WHERE owner_id = $1 AND content_hash = $2 AND deleted_at IS NULL",
            owner_id, digest)
        if row is None:
            return None
        return Upload(Document(**dict(row)), await self._latest_job(row["id"]), duplicate=True)

    async def _latest_job(self, document_id: uuid.UUID) -> Job:
        row = await self._pool.fetchrow(
            f"SELECT {_JOB} FROM ingestion_jobs j WHERE document_id = $1 ORDER BY created_at DESC LIMIT 1",
            document_id)
        return Job(**dict(row))

    async def job(self, job_id: uuid.UUID, user_id: uuid.UUID) -> Job:
        """A job of a document the user owns; 404 `job_not_found` otherwise."""
        row = await self._pool.fetchrow(
            f"""SELECT {_JOB} FROM ingestion_jobs j JOIN documents d ON d.id = j.document_id
                WHERE j.id = $1 AND d.owner_id = $2""", job_id, user_id)
        if row is None:
            raise errors.NotFound("no such ingestion job", code="job_not_found")
        return Job(**dict(row))

    # -- reading ------------------------------------------------------------------------------

    async def get(self, document_id: uuid.UUID, user_id: uuid.UUID) -> Document:
        doc, _ = await self.readable(document_id, user_id)
        return doc

    async def readable(self, document_id: uuid.UUID, user_id: uuid.UUID) -> tuple[Document, Access]:
        """The document and the caller's access to it; 404 when they may not read it."""
        params = Params(document_id, user_id)
        row = await self._pool.fetchrow(
            f"""SELECT {_DOC},
                   CASE WHEN d.owner_id = $2 THEN 'owner' ELSE (
                     SELECT p.permission FROM document_permissions p
                     WHERE p.document_id = d.id AND (p.expires_at IS NULL OR p.expires_at > now())
                       AND (p.user_id = $2 OR p.room_id IN (SELECT rp.room_id FROM room_participants rp
                            WHERE rp.user_id = $2 AND rp.is_member AND NOT rp.is_banned))
                     ORDER BY CASE p.permission WHEN 'admin' THEN 3 WHEN 'write' THEN 2 ELSE 1 END DESC
                     LIMIT 1) END AS access
                FROM documents d
                WHERE d.id = $1 AND d.deleted_at IS NULL AND {user_may_read("$2")}""",
            *params.values)
        if row is None:
            raise not_found()
        data = dict(row)
        access: Access = data.pop("access") or "read"
        return _shown_to(Document(**data), user_id), access

    async def download(self, document_id: uuid.UUID, user_id: uuid.UUID) -> tuple[Document, str]:
        """Count a download of a readable document; returns it and its blob's CID in the
        private store (`blobs`), which the caller streams."""
        doc = await self.get(document_id, user_id)
        row = await self._pool.fetchrow(
            """UPDATE documents SET download_count = download_count + 1 WHERE id = $1
               RETURNING download_count, blob_cid""", document_id)
        return doc.model_copy(update={"download_count": row["download_count"]}), row["blob_cid"]

    @property
    def blobs(self) -> BlobStore:
        """The private store of uploads."""
        return self._blobs

    # -- blob lifetime ------------------------------------------------------------------------

    async def release_blob(self, cid: str) -> bool:
        """Delete the blob when no live document references it; True when it was deleted."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", BLOB_LOCK, cid)
            if await conn.fetchval(
                    "SELECT 1 FROM documents WHERE blob_cid = $1 AND deleted_at IS NULL LIMIT 1", cid):
                return False
            return await self._blobs.delete(cid)

    async def sweep_blobs(self) -> int:
        """Delete every private blob no live document references (left by a deletion whose
        blob removal failed, or an upload interrupted between storing and recording it).
        Looks references up a batch at a time; each candidate is re-checked under its lock.
        Returns how many were deleted."""
        deleted, batch = 0, []
        async for cid in self._blobs.cids():
            batch.append(cid)
            if len(batch) >= SWEEP_BATCH:
                deleted += await self._sweep_batch(batch)
                batch = []
        deleted += await self._sweep_batch(batch)
        if deleted:
            log.info("blob sweep deleted %d unreferenced upload(s)", deleted)
        return deleted

    async def _sweep_batch(self, cids: Sequence[str]) -> int:
        if not cids:
            return 0
        live = {row["blob_cid"] for row in await self._pool.fetch(
            "SELECT DISTINCT blob_cid FROM documents WHERE blob_cid = ANY($1::text[]) AND deleted_at IS NULL",
            list(cids))}
        deleted = 0
        for cid in cids:
            if cid in live:
                continue
            try:
                deleted += await self.release_blob(cid)
            except Exception:
                log.exception("sweeping blob %s failed", cid)
        return deleted

    async def keep_sweeping(self, interval: float) -> None:
        """`sweep_blobs` now and then every `interval` seconds (once when 0); run as a task."""
        while True:
            try:
                await self.sweep_blobs()
            except Exception:
                log.exception("the blob sweep failed")
            if interval <= 0:
                return
            await asyncio.sleep(interval)

    async def list(self, user_id: uuid.UUID, query: LibraryQuery) -> LibraryPage:
        if query.room_id is not None and await self._membership(query.room_id, user_id) is None:
            raise errors.Forbidden("you are not a member of that room", code="not_member")
        if query.q and query.q.strip():
            return await self._search(user_id, query)
        return await self._recent(user_id, query)

    async def _search(self, user_id: uuid.UUID, query: LibraryQuery) -> LibraryPage:
        offset = decode_offset(query.cursor, most=MAX_SEARCH_OFFSET) if query.cursor else 0
        document_ids = None
        if query.owner == "me":
            document_ids = [r["id"] for r in await self._pool.fetch(
                "SELECT id FROM documents WHERE owner_id = $1 AND status = 'ready' AND deleted_at IS NULL",
                user_id)]
        scope = Scope(user_id=user_id, room_id=query.room_id)
        hits = await search(self._pool, self._embedder, query.q or "", scope, limit=query.limit + 1,
                            tags=query.tags, document_ids=document_ids, offset=offset)
        more = len(hits) > query.limit and offset + query.limit < MAX_SEARCH_OFFSET
        results = [SearchResult(**hit.__dict__) for hit in hits[: query.limit]]
        cursor = encode_offset(offset + query.limit) if more else None
        return LibraryPage(results=results, next_cursor=cursor)

    async def _recent(self, user_id: uuid.UUID, query: LibraryQuery) -> LibraryPage:
        params = Params(user_id)
        where = ["d.deleted_at IS NULL", user_may_read("$1"),
                 "(d.status = 'ready' OR d.owner_id = $1)"]  # others' documents once ingested
        if query.room_id is not None:
            where.append(f"""EXISTS (SELECT 1 FROM document_permissions p WHERE p.document_id = d.id
                AND p.room_id = {params.add(query.room_id)} AND (p.expires_at IS NULL OR p.expires_at > now()))""")
        if query.tags:
            where.append(f"d.tags @> {params.add(query.tags)}::text[]")
        if query.owner == "me":
            where.append("d.owner_id = $1")
        if query.cursor:
            created, last_id = decode_keyset(query.cursor)
            where.append(f"(d.created_at, d.id) < ({params.add(created)}, {params.add(last_id)})")
        rows = await self._pool.fetch(
            f"""SELECT {_DOC} FROM documents d WHERE {" AND ".join(where)}
                ORDER BY d.created_at DESC, d.id DESC LIMIT {params.add(query.limit + 1)}""",
            *params.values)
        docs = [_shown_to(Document(**dict(row)), user_id) for row in rows[: query.limit]]
        cursor = None
        if len(rows) > query.limit:
            cursor = encode_keyset(docs[-1].created_at, docs[-1].id)
        return LibraryPage(results=docs, next_cursor=cursor)

    # -- owner's changes ----------------------------------------------------------------------

    async def update(self, document_id: uuid.UUID, user_id: uuid.UUID, changes: DocumentChanges) -> Document:
        await self._require_owner(document_id, user_id)
        values = changes.model_dump(include=changes.model_fields_set)
        params = Params(document_id)
        sets = ", ".join(f"{name} = {params.add(value)}" for name, value in values.items())
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE documents d SET {sets}, updated_at = now() WHERE id = $1 RETURNING {_DOC}",
                *params.values)
            await users.audit(conn, user_id, "document.update", "document", document_id, values)
        return Document(**dict(row))

    async def delete(self, document_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self._require_owner(document_id, user_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE documents SET status = 'deleted', deleted_at = now(), updated_at = now()
                   WHERE id = $1""", document_id)
            await conn.execute("DELETE FROM document_chunks WHERE document_id = $1", document_id)
            await conn.execute("DELETE FROM document_pages WHERE document_id = $1", document_id)
            await conn.execute("DELETE FROM document_permissions WHERE document_id = $1", document_id)
            await conn.execute(
                """UPDATE ingestion_jobs SET status = 'failed', reason = 'document_deleted',
                       error_message = 'the document was deleted', lease_until = NULL,
                       finished_at = now(), updated_at = now()
                   WHERE document_id = $1 AND status NOT IN ('ready', 'failed')""", document_id)
            await users.audit(conn, user_id, "document.delete", "document", document_id)
            cid = await conn.fetchval("SELECT blob_cid FROM documents WHERE id = $1", document_id)
        try:
            await self.release_blob(cid)
        except Exception:  # the sweep deletes it later
            log.exception("deleting the blob of document %s failed", document_id)

    async def _require_owner(self, document_id: uuid.UUID, user_id: uuid.UUID) -> Document:
        doc, access = await self.readable(document_id, user_id)
        if access != "owner":
            raise errors.Forbidden("only the document's owner can do that", code="not_owner")
        return doc

    # -- sharing ------------------------------------------------------------------------------

    async def share(self, document_id: uuid.UUID, actor_id: uuid.UUID, request: ShareRequest, *,
                    announce: bool = True) -> Share:
        """Grant the permission; a room share is announced through `on_shared` unless the
        caller announces it itself (`announce=False`, the socket's `document_share`)."""
        doc = await self._require_sharer(document_id, actor_id)
        if request.expires_at is not None and request.expires_at <= datetime.now(UTC):
            raise errors.BadRequest("expires_at is in the past", code="expires_in_past")
        if request.room_id is not None:
            await self._check_room(request.room_id, actor_id)
        elif request.user_id == doc.owner_id:
            raise errors.BadRequest("the owner already has every right", code="cannot_share_with_owner")
        elif not await self._pool.fetchval("SELECT 1 FROM users WHERE id = $1", request.user_id):
            raise errors.NotFound("no such user", code="user_not_found")
        column = "room_id" if request.room_id is not None else "user_id"
        target = request.room_id or request.user_id
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""INSERT INTO document_permissions (document_id, {column}, permission, granted_by, expires_at)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (document_id, {column}) WHERE {column} IS NOT NULL
                    DO UPDATE SET permission = EXCLUDED.permission, granted_by = EXCLUDED.granted_by,
                        expires_at = EXCLUDED.expires_at, created_at = now()
                    RETURNING *""",
                document_id, target, request.permission, actor_id, request.expires_at)
            await users.audit(conn, actor_id, "document.share", "document", document_id,
                              {column: str(target), "permission": request.permission,
                               "expires_at": request.expires_at.isoformat() if request.expires_at else None})
        share = Share(**dict(row))
        if request.room_id is not None and announce:
            await self.on_shared(request.room_id, shared_event(doc, share), actor_id)
        return share

    async def point_room_to(self, document_id: uuid.UUID, actor_id: uuid.UUID,
                            room_id: uuid.UUID) -> Document:
        """A share into a room from the room itself (the socket's `document_share`; the caller
        announces it). An owner or admin makes sure the room can read the document: a grant
        of `read` without expiry, unless the room already holds a live grant, which is kept
        as it is (a `write`/`admin` permission or an expiry the owner chose is never weakened
        or dropped); an expired grant is replaced. Anyone else may only point at a public
        document (403 `not_sharer`); 404 when they cannot read it."""
        doc, access = await self.readable(document_id, actor_id)
        if _RANK[access] < _RANK["admin"]:
            if not doc.is_public:
                raise errors.Forbidden("only the document's owner or an admin can share it",
                                       code="not_sharer")
            return doc
        await self._check_room(room_id, actor_id)
        async with self._pool.acquire() as conn, conn.transaction():
            granted = await conn.fetchval(
                """INSERT INTO document_permissions AS p (document_id, room_id, permission, granted_by)
                   VALUES ($1, $2, 'read', $3)
                   ON CONFLICT (document_id, room_id) WHERE room_id IS NOT NULL
                   DO UPDATE SET permission = 'read', granted_by = EXCLUDED.granted_by,
                       expires_at = NULL, created_at = now()
                   WHERE p.expires_at IS NOT NULL AND p.expires_at <= now()
                   RETURNING id""", document_id, room_id, actor_id)
            if granted is not None:
                await users.audit(conn, actor_id, "document.share", "document", document_id,
                                  {"room_id": str(room_id), "permission": "read", "expires_at": None})
        return doc

    async def revoke(self, document_id: uuid.UUID, actor_id: uuid.UUID, target: ShareTarget) -> None:
        await self._require_sharer(document_id, actor_id)
        column = "room_id" if target.room_id is not None else "user_id"
        async with self._pool.acquire() as conn, conn.transaction():
            gone = await conn.fetchval(
                f"DELETE FROM document_permissions WHERE document_id = $1 AND {column} = $2 RETURNING id",
                document_id, target.room_id or target.user_id)
            if gone is None:
                raise errors.NotFound("the document is not shared with that target", code="share_not_found")
            await users.audit(conn, actor_id, "document.revoke", "document", document_id,
                              {column: str(target.room_id or target.user_id)})

    async def shares(self, document_id: uuid.UUID, actor_id: uuid.UUID) -> builtins.list[Share]:
        await self._require_sharer(document_id, actor_id)
        rows = await self._pool.fetch(
            "SELECT * FROM document_permissions WHERE document_id = $1 ORDER BY created_at, id", document_id)
        return [Share(**dict(row)) for row in rows]

    async def _require_sharer(self, document_id: uuid.UUID, actor_id: uuid.UUID) -> Document:
        doc, access = await self.readable(document_id, actor_id)
        if _RANK[access] < _RANK["admin"]:
            raise errors.Forbidden("only the owner or an admin of the document can share it",
                                   code="not_document_admin")
        return doc

    async def _check_room(self, room_id: uuid.UUID, user_id: uuid.UUID) -> None:
        if not await self._pool.fetchval("SELECT 1 FROM study_rooms WHERE id = $1", room_id):
            raise errors.NotFound("no such room", code="room_not_found")
        if await self._membership(room_id, user_id) is None:
            raise errors.Forbidden("you are not a member of that room", code="not_member")


def _shown_to(doc: Document, viewer_id: uuid.UUID) -> Document:
    """The document as `viewer_id` may see it: content addresses for the owner only."""
    if doc.owner_id == viewer_id:
        return doc
    return doc.model_copy(update={"content_hash": None, "blob_cid": None})


def shared_event(doc: Document, share: Share) -> dict[str, Any]:
    """The `document_shared` payload for `room:{id}:documents`."""
    return {"document_id": str(doc.id), "title": doc.title, "content_type": doc.content_type,
            "page_count": doc.page_count, "tags": doc.tags, "status": doc.status,
            "permission": share.permission, "shared_by": str(share.granted_by),
            "expires_at": share.expires_at.isoformat() if share.expires_at else None}


def _measure(file: BinaryIO) -> tuple[int, bytes, str]:
    """(size, first SNIFF_BYTES, sha256 hex) of a file, read in pieces from the start."""
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    hasher = hashlib.sha256(head)
    size = len(head)
    while piece := file.read(HASH_CHUNK):
        hasher.update(piece)
        size += len(piece)
    return size, head, hasher.hexdigest()


def _title_from(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    return (stem.replace("_", " ").strip() or "Untitled")[:300]


def _tags_or_400(tags: Sequence[str]) -> list[str]:
    try:
        return clean_tags([part for tag in tags for part in tag.split(",") if part.strip()], most=MAX_TAGS)
    except ValueError as err:
        raise errors.BadRequest(str(err), code="validation_error") from None

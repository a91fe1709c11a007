"""Background ingestion jobs inside the server process.

A job moves pending -> extracting -> embedding -> ready, or to failed with a `reason` code
(the extractor's: too_large, corrupt_pdf, encrypted_pdf, pdf_too_complex, extraction_timeout,
extraction_failed, corrupt_csv, no_text, not_utf8; or blob_missing, too_many_attempts,
extraction_crashed, document_deleted, internal_error) and a human `error_message`. A failed
job is final: no node claims it again.

Work never runs on the event loop: every kind is read in extract.py's limited child process,
chunking in a thread, embedding in the embedder's worker thread. At most `concurrency` jobs
run at once in one process. Without an embedder (lexical-only mode) chunks are counted in
words and stored without vectors; with one, each vector is stored with its `model_id`.

Claiming is fair between owners: the claim query takes the oldest claimable job of the
owner whose job was claimed least recently (`ingest_turns`), so jobs of different owners
alternate whatever the queue holds.

Jobs survive restarts. A worker claims a job with `FOR UPDATE SKIP LOCKED` and holds a lease
(`lease_until`) that a heartbeat renews; on a clean shutdown the lease is released, so the
next start resumes the job at once; after a crash the job is claimed again once its lease
lapses. Each claim bumps `attempts`, which fences writes: a worker that lost its job (lease
lapsed, someone else claimed it) cannot overwrite the newer attempt. A job that was claimed
`max_attempts` times without finishing fails with `too_many_attempts`; one whose lease
lapsed while it was extracting (its node died, perhaps because of the file)
`max_extract_crashes` times fails with `extraction_crashed` before it is read again. Chunks, pages and the
document's `ready` status are written in one transaction, so a half-ingested document is
never searchable.

Progress goes to the `notify(user_id, payload)` hook (default no-op) with payload
`{"type": "ingest_progress", "job_id", "document_id", "status", "progress", "reason"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from roomserver import errors
from roomserver.library.chunking import DEFAULT_MAX_TOKENS, Chunk, TokenCounter, chunk_pages
from roomserver.library.embeddings import Embedder, Vectors
from roomserver.library.extract import ExtractionLimits, Page, extract_pages
from roomserver.library.sniff import FileKind
from roomserver.observe.metrics import Metrics
from roomserver.store.blobstore import BlobStore

log = logging.getLogger(__name__)

Notify = Callable[[uuid.UUID, dict[str, Any]], Awaitable[None]]
EMBED_BATCH = 32
EXTRACTED = 0.1  # progress once the text is out; embedding fills the rest up to 1


async def no_notify(user_id: uuid.UUID, payload: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    document_id: uuid.UUID
    attempt: int
    extract_crashes: int = 0


class JobLost(Exception):
    """This worker's claim on the job is gone (lease lapsed and another worker took it)."""


def word_counter(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


class Ingestor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: BlobStore,
        embedder: Embedder | None,
        *,
        concurrency: int = 2,
        lease_seconds: float = 30.0,
        max_attempts: int = 3,
        max_extract_crashes: int = 2,
        poll_seconds: float = 5.0,
        limits: ExtractionLimits | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        notify: Notify = no_notify,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._jobs = (metrics or Metrics.unexposed()).ingest_jobs
        self._blobs = blobs
        self._embedder = embedder
        self._slots = asyncio.Semaphore(concurrency)
        self._lease = lease_seconds
        self._max_attempts = max_attempts
        self._max_crashes = max_extract_crashes
        self._poll = poll_seconds
        self._limits = limits or ExtractionLimits()
        self._max_tokens = max_tokens
        self.notify = notify
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[uuid.UUID, tuple[Claim, asyncio.Task[None]]] = {}
        self._counter: TokenCounter | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._claim_loop(), name="ingest-claims")

    def wake(self) -> None:
        """A job was queued: look for work now rather than at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop claiming, cancel running jobs and release their leases for the next start."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        running = list(self._running.values())
        for _, task in running:
            task.cancel()
        for claim, task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await self._pool.execute(
                    """UPDATE ingestion_jobs SET lease_until = NULL, updated_at = now()
                       WHERE id = $1 AND attempts = $2 AND status IN ('extracting', 'embedding')""",
                    claim.job_id, claim.attempt)

    @property
    def running(self) -> int:
        return len(self._running)

    # -- claiming -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self._slots.acquire()
                self._wake.clear()  # before looking, so a wake during the query is not lost
                claim = await self.claim()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._slots.release()
                log.exception("claiming an ingestion job failed")
                await asyncio.sleep(self._poll)
                continue
            if claim is None:
                self._slots.release()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                continue
            task = asyncio.create_task(self._run(claim), name=f"ingest-{claim.job_id}")
            self._running[claim.job_id] = (claim, task)
            task.add_done_callback(functools.partial(self._finished_task, claim.job_id))

    def _finished_task(self, job_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._finished(job_id)

    def _finished(self, job_id: uuid.UUID) -> None:
        self._running.pop(job_id, None)
        self._slots.release()
        self._wake.set()

    async def claim(self) -> Claim | None:
        """Claim the next job (oldest of the owner served least recently) and lease it."""
        row = await self._pool.fetchrow(
            """WITH pick AS (
                   SELECT j.id, d.owner_id FROM ingestion_jobs j
                   JOIN documents d ON d.id = j.document_id
                   LEFT JOIN ingest_turns t ON t.owner_id = d.owner_id
                   WHERE j.status = 'pending' OR (j.status IN ('extracting', 'embedding')
                         AND (j.lease_until IS NULL OR j.lease_until < now()))
                   ORDER BY t.last_claimed_at NULLS FIRST, j.created_at, j.id
                   LIMIT 1 FOR UPDATE OF j SKIP LOCKED),
               turn AS (
                   INSERT INTO ingest_turns (owner_id, last_claimed_at)
                   SELECT owner_id, clock_timestamp() FROM pick
                   ON CONFLICT (owner_id) DO UPDATE SET last_claimed_at = EXCLUDED.last_claimed_at)
               UPDATE ingestion_jobs j
               SET status = 'extracting', progress = 0, attempts = j.attempts + 1,
                   extract_crashes = j.extract_crashes
                       + (j.status = 'extracting' AND j.lease_until IS NOT NULL)::int,
                   lease_until = now() + make_interval(secs => $1), updated_at = now()
               FROM pick WHERE j.id = pick.id
               RETURNING j.id, j.document_id, j.attempts, j.extract_crashes""",
            self._lease)
        if row is None:
            return None
        return Claim(row["id"], row["document_id"], row["attempts"], row["extract_crashes"])

    # -- one job ------------------------------------------------------------------------------

    async def _run(self, claim: Claim) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(claim))
        try:
            if claim.attempt > self._max_attempts:
                raise errors.BadRequest(f"ingestion was interrupted {claim.attempt - 1} times",
                                        code="too_many_attempts")
            if claim.extract_crashes >= self._max_crashes:
                raise errors.BadRequest(
                    f"a server stopped while reading this file {claim.extract_crashes} times",
                    code="extraction_crashed")
            await self._ingest(claim)
            self._jobs.labels("ready").inc()
        except JobLost:
            log.info("ingestion job %s was taken over by another worker", claim.job_id)
            self._jobs.labels("lost").inc()
        except errors.RoomserverError as err:
            await self._fail(claim, err.code, err.message)
            self._jobs.labels("failed").inc()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ingestion job %s failed unexpectedly", claim.job_id)
            await self._fail(claim, "internal_error", "the server failed while ingesting; see its log")
            self._jobs.labels("failed").inc()
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            with contextlib.suppress(Exception):
                await self._pool.execute(
                    """UPDATE ingestion_jobs SET lease_until = now() + make_interval(secs => $3)
                       WHERE id = $1 AND attempts = $2""", claim.job_id, claim.attempt, self._lease)

    async def _ingest(self, claim: Claim) -> None:
        doc = await self._pool.fetchrow(
            "SELECT owner_id, blob_cid, content_type, deleted_at FROM documents WHERE id = $1",
            claim.document_id)
        if doc is None or doc["deleted_at"] is not None:
            raise errors.BadRequest("the document was deleted", code="document_deleted")
        owner: uuid.UUID = doc["owner_id"]
        await self._progress(claim, owner, "extracting", 0.0)
        try:
            data = await self._blobs.get(doc["blob_cid"])
        except errors.NotFound:
            raise errors.BadRequest("the stored file is missing", code="blob_missing") from None
        pages = await extract_pages(data, kind_of(doc["content_type"]), self._limits)
        del data
        chunks = await asyncio.to_thread(self._chunk, pages)
        await self._progress(claim, owner, "embedding", EXTRACTED)
        vectors = await self._embed(claim, owner, chunks)
        await self._store(claim, owner, pages, chunks, vectors)

    def _chunk(self, pages: Sequence[Page]) -> list[Chunk]:
        if self._counter is None:
            make = getattr(self._embedder, "token_counter", None)
            self._counter = make() if callable(make) else word_counter
        return chunk_pages(pages, self._counter, max_tokens=self._max_tokens)

    async def _embed(self, claim: Claim, owner: uuid.UUID, chunks: Sequence[Chunk]) -> Vectors | None:
        if self._embedder is None:
            return None
        wait_ready = getattr(self._embedder, "wait_ready", None)
        if callable(wait_ready):
            await wait_ready()
        parts: list[Vectors] = []
        for start in range(0, len(chunks), EMBED_BATCH):
            batch = [chunk.text for chunk in chunks[start : start + EMBED_BATCH]]
            parts.append(await self._embedder.embed(batch))
            done = (start + len(batch)) / len(chunks)
            await self._progress(claim, owner, "embedding", EXTRACTED + (0.99 - EXTRACTED) * done)
        if not parts:
            return np.empty((0, self._embedder.dimensions), dtype=np.float32)
        return np.concatenate(parts)

    async def _store(self, claim: Claim, owner: uuid.UUID, pages: Sequence[Page],
                     chunks: Sequence[Chunk], vectors: Vectors | None) -> None:
        model = None if vectors is None or self._embedder is None else self._embedder.model_id
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock_own(conn, claim)
            alive = await conn.fetchval(
                """UPDATE documents SET status = 'ready', page_count = $2, updated_at = now()
                   WHERE id = $1 AND deleted_at IS NULL RETURNING 1""",
                claim.document_id, len(pages))
            if alive is None:
                raise errors.BadRequest("the document was deleted", code="document_deleted")
            await conn.execute("DELETE FROM document_chunks WHERE document_id = $1", claim.document_id)
            await conn.execute("DELETE FROM document_pages WHERE document_id = $1", claim.document_id)
            await conn.copy_records_to_table(
                "document_pages", columns=["document_id", "page_number", "text"],
                records=[(claim.document_id, page.number, page.text) for page in pages])
            await conn.copy_records_to_table(
                "document_chunks",
                columns=["document_id", "chunk_index", "text", "page_start", "page_end",
                         "char_start", "char_end", "token_count", "embedding", "embedding_model"],
                records=[(claim.document_id, c.index, c.text, c.page_start, c.page_end,
                          c.char_start, c.char_end, c.token_count,
                          None if vectors is None else vectors[i], model)
                         for i, c in enumerate(chunks)])
            await conn.execute(
                """UPDATE ingestion_jobs SET status = 'ready', progress = 1, reason = NULL,
                       error_message = NULL, chunk_count = $2, lease_until = NULL,
                       updated_at = now(), finished_at = now()
                   WHERE id = $1""", claim.job_id, len(chunks))
        await self._send(owner, claim, "ready", 1.0, None)

    async def _lock_own(self, conn: asyncpg.Connection, claim: Claim) -> None:
        owned = await conn.fetchval(
            "SELECT 1 FROM ingestion_jobs WHERE id = $1 AND attempts = $2 FOR UPDATE",
            claim.job_id, claim.attempt)
        if owned is None:
            raise JobLost()

    async def _progress(self, claim: Claim, owner: uuid.UUID, status: str, progress: float) -> None:
        updated = await self._pool.fetchval(
            """UPDATE ingestion_jobs SET status = $3, progress = $4, updated_at = now(),
                   lease_until = now() + make_interval(secs => $5)
               WHERE id = $1 AND attempts = $2 RETURNING 1""",
            claim.job_id, claim.attempt, status, progress, self._lease)
        if updated is None:
            raise JobLost()
        await self._send(owner, claim, status, progress, None)

    async def _fail(self, claim: Claim, reason: str, message: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                await self._lock_own(conn, claim)
            except JobLost:
                return
            await conn.execute(
                """UPDATE ingestion_jobs SET status = 'failed', reason = $2, error_message = $3,
                       lease_until = NULL, updated_at = now(), finished_at = now()
                   WHERE id = $1""", claim.job_id, reason, message[:500])
            owner = await conn.fetchval(
                """UPDATE documents SET status = 'failed', updated_at = now()
                   WHERE id = $1 AND deleted_at IS NULL RETURNING owner_id""", claim.document_id)
        log.info("ingestion job %s failed: %s (%s)", claim.job_id, reason, message)
        if owner is not None:
            await self._send(owner, claim, "failed", 0.0, reason)

    async def _send(self, owner: uuid.UUID, claim: Claim, status: str, progress: float,
                    reason: str | None) -> None:
        payload = {"type": "ingest_progress", "job_id": str(claim.job_id),
                   "document_id": str(claim.document_id), "status": status,
                   "progress": round(progress, 3), "reason": reason}
        try:
            await self.notify(owner, payload)
        except Exception:
            log.exception("the ingestion notify hook failed")


def kind_of(content_type: str) -> FileKind:
    """The FileKind of a stored document's content type (as sniff.CONTENT_TYPES wrote it)."""
    base = content_type.split(";", 1)[0].strip().lower()
    return {"application/pdf": FileKind.PDF, "text/markdown": FileKind.MARKDOWN,
            "text/csv": FileKind.CSV}.get(base, FileKind.TEXT)

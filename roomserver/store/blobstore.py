"""Content-addressed blob storage: bytes in, IPFS CIDv1 (raw, sha2-256) out.

A blob is immutable: its CID names its bytes. The content type given with the first `put`
of some bytes is kept; later puts of the same bytes return the same CID and leave it as is.
Every method that takes a CID raises BadRequest(code="invalid_cid") for a malformed one and
NotFound(code="blob_not_found") when the store does not hold it.

Implementations: `MemoryBlobStore` (tests, one process), `LocalBlobStore` (a directory: one
node) and `S3BlobStore` (store/s3blobs.py: S3-compatible object storage shared by many nodes).

Namespaces: a deployment keeps two stores of this one Protocol, never mixed. `public/` holds
what was published on purpose (NFT metadata and card images) and is what `GET /ipfs/{cid}`
serves; `private/` holds user uploads, reachable only through the access-checked document
download. A backend with one bucket gives each namespace a key prefix (`public/`,
`private/`); `LocalBlobStore` gives each a directory under `DATA_DIR/blobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from roomserver.errors import BadRequest, NotFound
from roomserver.store.cid import CidHasher, cid_for_bytes, is_cid, parse_cid

DEFAULT_CONTENT_TYPE = "application/octet-stream"
COPY_CHUNK = 1 << 20
STALE_TMP_SECONDS = 3600.0
PUBLIC = "public"
PRIVATE = "private"


class BlobStore(Protocol):
    async def put(self, data: bytes, content_type: str) -> str:
        """Store `data`; return its CID."""

    async def put_file(self, source: Path | BinaryIO, content_type: str) -> str:
        """Store a file's content (a path, or a binary stream read to its end); return its CID.

        Implementations copy in pieces, so a large upload is never held in memory whole."""

    async def get(self, cid: str) -> bytes:
        """The blob's bytes."""

    async def open(self, cid: str) -> BinaryIO:
        """A readable binary file object positioned at the start; the caller closes it."""

    async def stream(self, cid: str) -> AsyncIterator[bytes]:
        """The blob's bytes in pieces, for a response body. NotFound comes from this call,
        before any piece; the iterator releases what it holds when exhausted or closed."""

    async def exists(self, cid: str) -> bool: ...

    async def content_type(self, cid: str) -> str:
        """The content type stored with the blob."""

    def path(self, cid: str) -> Path | None:
        """The blob's file on local disk, or None when the store keeps no local files."""

    async def delete(self, cid: str) -> bool:
        """Remove the blob; False when the store did not hold it."""

    def cids(self) -> AsyncIterator[str]:
        """Every CID the store holds (for sweeps; order unspecified)."""


def check_content_type(content_type: str) -> str:
    """A content type safe to store and send back as a header, or BadRequest."""
    if not content_type or len(content_type) > 200 or not content_type.isascii():
        raise BadRequest("invalid content type", code="invalid_content_type")
    if any(ch in content_type for ch in "\r\n\0") or "/" not in content_type:
        raise BadRequest("invalid content type", code="invalid_content_type")
    return content_type


def missing_blob(cid: str) -> NotFound:
    """The one NotFound every store raises for a CID it does not hold."""
    return NotFound("no such blob", code="blob_not_found", details={"cid": cid})


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _pieces(file: BinaryIO) -> AsyncIterator[bytes]:
    """`file` read to its end in worker threads, then closed."""
    try:
        while piece := await asyncio.to_thread(file.read, COPY_CHUNK):
            yield piece
    finally:
        file.close()


class MemoryBlobStore:
    """Blobs in a dict: for tests and single-process use."""

    def __init__(self) -> None:
        self._blobs: dict[str, tuple[bytes, str]] = {}

    async def put(self, data: bytes, content_type: str) -> str:
        check_content_type(content_type)
        cid = cid_for_bytes(data)
        self._blobs.setdefault(cid, (bytes(data), content_type))
        return cid

    async def put_file(self, source: Path | BinaryIO, content_type: str) -> str:
        if isinstance(source, Path):
            data = await asyncio.to_thread(source.read_bytes)
        else:
            data = await asyncio.to_thread(source.read)
        return await self.put(data, content_type)

    async def get(self, cid: str) -> bytes:
        return self._entry(cid)[0]

    async def open(self, cid: str) -> BinaryIO:
        return io.BytesIO(self._entry(cid)[0])

    async def stream(self, cid: str) -> AsyncIterator[bytes]:
        return _one(self._entry(cid)[0])

    async def exists(self, cid: str) -> bool:
        parse_cid(cid)
        return cid in self._blobs

    async def content_type(self, cid: str) -> str:
        return self._entry(cid)[1]

    def path(self, cid: str) -> Path | None:
        parse_cid(cid)
        return None

    async def delete(self, cid: str) -> bool:
        parse_cid(cid)
        return self._blobs.pop(cid, None) is not None

    async def cids(self) -> AsyncIterator[str]:
        for cid in list(self._blobs):
            yield cid

    def _entry(self, cid: str) -> tuple[bytes, str]:
        parse_cid(cid)
        try:
            return self._blobs[cid]
        except KeyError:
            raise missing_blob(cid) from None


class LocalBlobStore:
    """Blobs as files under `root`: `root/<shard>/<cid>` with `<cid>.type` beside.

    Writes go to a temporary file in `root/tmp` and are renamed into place, so a reader never
    sees a partial blob and a crash leaves at most a stray temporary file, which the next
    opening of the store removes once it is an hour old (`stale_after`). The shard is two
    characters of the CID (the leading characters are the same for every CID). File I/O runs
    in worker threads.
    """

    def __init__(self, root: Path, *, stale_after: float = STALE_TMP_SECONDS) -> None:
        """Opening the store removes temporary files older than `stale_after` seconds."""
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self.clear_temporary(older_than=stale_after)

    async def put(self, data: bytes, content_type: str) -> str:
        check_content_type(content_type)
        return await asyncio.to_thread(self._put_stream, io.BytesIO(data), content_type)

    async def put_file(self, source: Path | BinaryIO, content_type: str) -> str:
        check_content_type(content_type)
        if isinstance(source, Path):
            return await asyncio.to_thread(self._put_path, source, content_type)
        return await asyncio.to_thread(self._put_stream, source, content_type)

    async def get(self, cid: str) -> bytes:
        return await asyncio.to_thread(self._read, cid)

    async def open(self, cid: str) -> BinaryIO:
        file = self._file(cid)
        try:
            return await asyncio.to_thread(file.open, "rb")
        except FileNotFoundError:
            raise missing_blob(cid) from None

    async def stream(self, cid: str) -> AsyncIterator[bytes]:
        return _pieces(await self.open(cid))

    async def exists(self, cid: str) -> bool:
        return await asyncio.to_thread(self._file(cid).is_file)

    async def content_type(self, cid: str) -> str:
        return await asyncio.to_thread(self._read_type, cid)

    def path(self, cid: str) -> Path | None:
        file = self._file(cid)
        return file if file.is_file() else None

    async def delete(self, cid: str) -> bool:
        return await asyncio.to_thread(self._delete, cid)

    async def cids(self) -> AsyncIterator[str]:
        for cid in await asyncio.to_thread(self._list):
            yield cid

    def _delete(self, cid: str) -> bool:
        file = self._file(cid)
        file.with_name(file.name + ".type").unlink(missing_ok=True)
        try:
            file.unlink()
        except FileNotFoundError:
            return False
        return True

    def _list(self) -> list[str]:
        return [file.name for shard in self.root.iterdir() if shard.is_dir() and len(shard.name) == 2
                for file in shard.iterdir() if is_cid(file.name)]

    def _file(self, cid: str) -> Path:
        parse_cid(cid)  # also guarantees a safe file name
        return self.root / cid[-3:-1] / cid

    def _put_path(self, source: Path, content_type: str) -> str:
        with source.open("rb") as stream:
            return self._put_stream(stream, content_type)

    def _put_stream(self, stream: BinaryIO, content_type: str) -> str:
        hasher = CidHasher()
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while piece := stream.read(COPY_CHUNK):
                    hasher.update(piece)
                    out.write(piece)
                out.flush()
                os.fsync(out.fileno())
            cid = hasher.cid()
            target = self._file(cid)
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                self._write_type(target, content_type)
                os.replace(tmp, target)
            return cid
        finally:
            tmp.unlink(missing_ok=True)

    def _write_type(self, target: Path, content_type: str) -> None:
        type_file = target.with_name(target.name + ".type")
        if type_file.is_file():
            return
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="type-")
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(content_type)
        os.replace(tmp_name, type_file)

    def _read(self, cid: str) -> bytes:
        try:
            return self._file(cid).read_bytes()
        except FileNotFoundError:
            raise missing_blob(cid) from None

    def _read_type(self, cid: str) -> str:
        file = self._file(cid)
        if not file.is_file():
            raise missing_blob(cid)
        try:
            return file.with_name(file.name + ".type").read_text("ascii").strip()
        except FileNotFoundError:
            return DEFAULT_CONTENT_TYPE

    def clear_temporary(self, *, older_than: float = 0.0) -> int:
        """Remove temporary files of interrupted writes last changed more than `older_than`
        seconds ago (newer ones may be another process's write in progress); how many went."""
        cutoff = time.time() - older_than
        removed = 0
        for entry in os.scandir(self._tmp):
            with contextlib.suppress(OSError):  # gone already, or not ours to remove
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed


def split_legacy_layout(root: Path, is_private: Callable[[str], bool]) -> int:
    """Move blobs of the single-namespace layout (`root/<shard>/<cid>`, before issue 12) into
    `root/private/` (a CID `is_private` names: document uploads) or `root/public/` (the rest,
    which only NFT publishing wrote). Idempotent; returns how many blobs moved."""
    moved = 0
    for shard in [d for d in root.iterdir() if d.is_dir() and len(d.name) == 2]:
        for file in [f for f in shard.iterdir() if is_cid(f.name)]:
            target = root / (PRIVATE if is_private(file.name) else PUBLIC) / shard.name
            target.mkdir(parents=True, exist_ok=True)
            type_file = file.with_name(file.name + ".type")
            if type_file.is_file():
                os.replace(type_file, target / type_file.name)
            os.replace(file, target / file.name)
            moved += 1
        for leftover in shard.iterdir():
            leftover.unlink()
        shard.rmdir()
    return moved

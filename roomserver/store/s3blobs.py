"""`S3BlobStore`: the `BlobStore` Protocol (store/blobstore.py) on S3-compatible object storage,
so every node of a deployment reads the blobs any node wrote.

Layout: one bucket, one object per blob at `<prefix><namespace>/<cid>` (the namespaces are
`public/` and `private/`, as in blobstore.py); the content type is the object's Content-Type.
Objects are written without an ACL, so they are as private as the bucket (S3's default: only
signed requests read them); `/ipfs` serves the public namespace through the node, never by a
public bucket URL.

Writes are content-addressed: the CID is computed first (one pass over the file), the object
is written only when its key is missing, and a file larger than `part_size` goes up as a
multipart upload read from the file one part at a time (never whole in memory); a failed
multipart upload is aborted. Two nodes writing the same bytes at once write the same object;
the content type of whichever finishes last is kept (both name the same bytes).

Errors: a missing key is `NotFound(code="blob_not_found")` exactly as in the local store;
an unreachable or refusing object store raises `Unavailable(code="blob_store_unavailable")`.
The client is aiobotocore's (docs/decisions.md); the caller owns its lifetime (`open_s3`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from roomserver.errors import Unavailable
from roomserver.store.blobstore import (
    COPY_CHUNK,
    DEFAULT_CONTENT_TYPE,
    check_content_type,
    missing_blob,
)
from roomserver.store.cid import CidHasher, cid_for_bytes, is_cid, parse_cid

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 << 20  # S3's smallest part (but the last)
DEFAULT_PART_SIZE = 8 << 20
_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
T = TypeVar("T")


@dataclass(frozen=True)
class S3Location:
    """Where blobs live: a bucket and a key prefix ("" or ending in "/")."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """`s3://bucket[/prefix]`; ValueError for anything else (bucket names: 3-63 of a-z0-9.-)."""
        match = _URL.match(url)
        if match is None:
            raise ValueError(f"not an s3://bucket/prefix URL with a valid bucket name: {url!r}")
        prefix = (match["prefix"] or "").strip("/")
        return cls(match["bucket"], f"{prefix}/" if prefix else "")


@dataclass(frozen=True)
class S3Credentials:
    """Endpoint, region and key pair; an empty field leaves it to botocore's own chain
    (its `AWS_*` variables, `~/.aws`, instance roles)."""

    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""

    def client_args(self) -> dict[str, Any]:
        args = {"endpoint_url": self.endpoint_url, "region_name": self.region,
                "aws_access_key_id": self.access_key_id,
                "aws_secret_access_key": self.secret_access_key}
        return {key: value for key, value in args.items() if value}


async def open_s3(stack: AsyncExitStack, credentials: S3Credentials) -> Any:
    """An aiobotocore S3 client closed with `stack` (path-style addressing, which every
    S3-compatible server understands; a few retries; short connect timeout)."""
    from aiobotocore.session import get_session

    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5, read_timeout=60)
    client = get_session().create_client("s3", config=config, **credentials.client_args())
    return await stack.enter_async_context(client)


async def ensure_bucket(client: Any, bucket: str) -> bool:
    """Create `bucket` when missing (any node may race another: both succeed); True if created."""
    try:
        await _call(client.head_bucket(Bucket=bucket))
        return False
    except _Missing:
        pass
    region = client.meta.region_name
    extra = {} if region in (None, "", "us-east-1") else {
        "CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        await client.create_bucket(Bucket=bucket, **extra)
    except ClientError as exc:
        if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise _unavailable(exc) from exc
        return False
    except BotoCoreError as exc:
        raise _unavailable(exc) from exc
    log.info("created bucket %s", bucket)
    return True


class _Missing(Exception):
    """The key (or bucket) is not there: translated to the Protocol's NotFound by callers."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(exc: Exception) -> Unavailable:
    return Unavailable("the object store did not answer", code="blob_store_unavailable",
                              details={"error": type(exc).__name__})


async def _call(request: Awaitable[T]) -> T:
    """Await one S3 request; a missing key/bucket becomes `_Missing`, other failures 503."""
    try:
        return await request
    except ClientError as exc:
        if _code(exc) in _NOT_FOUND:
            raise _Missing from None
        raise _unavailable(exc) from exc
    except BotoCoreError as exc:
        raise _unavailable(exc) from exc


class S3BlobStore:
    """One namespace of blobs in `bucket` under `prefix` (e.g. `roomserver/private/`)."""

    def __init__(self, client: Any, bucket: str, prefix: str, *,
                 part_size: int = DEFAULT_PART_SIZE, spool_dir: Path | None = None) -> None:
        """`client` is an open aiobotocore S3 client (`open_s3`); `part_size` (at least 5 MiB)
        splits larger files into multipart uploads; `spool_dir` holds a copy of a stream that
        cannot seek while it is hashed and sent."""
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self._client, self.bucket, self.prefix = client, bucket, prefix
        self.part_size, self._spool_dir = part_size, spool_dir

    def key(self, cid: str) -> str:
        parse_cid(cid)  # invalid_cid, and a safe key
        return f"{self.prefix}{cid}"

    async def put(self, data: bytes, content_type: str) -> str:
        check_content_type(content_type)
        cid = cid_for_bytes(data)
        if not await self.exists(cid):
            await _call(self._client.put_object(Bucket=self.bucket, Key=self.key(cid),
                                                Body=bytes(data), ContentType=content_type))
        return cid

    async def put_file(self, source: Path | BinaryIO, content_type: str) -> str:
        check_content_type(content_type)
        async with AsyncExitStack() as stack:
            stream, owned = await asyncio.to_thread(self._seekable, source)
            if owned:
                stack.callback(stream.close)
            start = await asyncio.to_thread(stream.tell)
            cid, size = await asyncio.to_thread(_hash, stream)
            if await self.exists(cid):
                return cid
            await asyncio.to_thread(stream.seek, start)
            if size <= self.part_size:
                body = await asyncio.to_thread(stream.read, size)
                await _call(self._client.put_object(Bucket=self.bucket, Key=self.key(cid),
                                                    Body=body, ContentType=content_type))
            else:
                await self._multipart(stream, self.key(cid), content_type)
            return cid

    async def _multipart(self, stream: BinaryIO, key: str, content_type: str) -> None:
        """Upload `stream` to its end in parts of `part_size`, one part in memory at a time."""
        created = await _call(self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type))
        upload_id = created["UploadId"]
        try:
            parts = []
            number = 1
            while piece := await asyncio.to_thread(stream.read, self.part_size):
                sent = await _call(self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=piece))
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
                number += 1
            await _call(self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            with contextlib.suppress(Exception):
                await self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _seekable(self, source: Path | BinaryIO) -> tuple[BinaryIO, bool]:
        """A stream that can be read twice (hashed, then sent), and whether the caller closes it:
        the path opened, the stream itself, or a spooled copy of a stream that cannot seek."""
        if isinstance(source, Path):
            return source.open("rb"), True
        if source.seekable():
            return source, False
        spool = tempfile.TemporaryFile(dir=self._spool_dir)
        while piece := source.read(COPY_CHUNK):
            spool.write(piece)
        spool.seek(0)
        return spool, True  # type: ignore[return-value]

    async def get(self, cid: str) -> bytes:
        async with await self._get(cid) as body:
            data: bytes = await body.read()
            return data

    async def open(self, cid: str) -> BinaryIO:
        """A local copy (in memory up to 1 MiB, then a temporary file); `stream` avoids the copy."""
        chunks = await self.stream(cid)
        copy = tempfile.SpooledTemporaryFile(max_size=1 << 20, dir=str(self._spool_dir) if self._spool_dir else None)
        try:
            async for piece in chunks:
                await asyncio.to_thread(copy.write, piece)
            copy.seek(0)
        except BaseException:
            copy.close()
            raise
        return copy  # type: ignore[return-value]

    async def stream(self, cid: str) -> AsyncIterator[bytes]:
        body = await self._get(cid)  # NotFound here, before the first byte is promised

        async def chunks() -> AsyncIterator[bytes]:
            async with body:
                async for piece in body.iter_chunks(COPY_CHUNK):
                    yield piece

        return chunks()

    async def _get(self, cid: str) -> Any:
        try:
            reply = await _call(self._client.get_object(Bucket=self.bucket, Key=self.key(cid)))
        except _Missing:
            raise missing_blob(cid) from None
        return reply["Body"]

    async def exists(self, cid: str) -> bool:
        try:
            await self._head(cid)
        except _Missing:
            return False
        return True

    async def content_type(self, cid: str) -> str:
        try:
            head = await self._head(cid)
        except _Missing:
            raise missing_blob(cid) from None
        return str(head.get("ContentType") or DEFAULT_CONTENT_TYPE)

    async def _head(self, cid: str) -> dict[str, Any]:
        head: dict[str, Any] = await _call(self._client.head_object(Bucket=self.bucket, Key=self.key(cid)))
        return head

    def path(self, cid: str) -> Path | None:
        parse_cid(cid)
        return None

    async def delete(self, cid: str) -> bool:
        if not await self.exists(cid):
            return False
        await _call(self._client.delete_object(Bucket=self.bucket, Key=self.key(cid)))
        return True

    async def cids(self) -> AsyncIterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for entry in page.get("Contents", ()):
                    name = entry["Key"][len(self.prefix):]
                    if is_cid(name):
                        yield name
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc) from exc

    async def health(self) -> dict[str, Any]:
        """`/health`'s probe: the bucket answers a signed HEAD."""
        try:
            await _call(self._client.head_bucket(Bucket=self.bucket))
        except (_Missing, Unavailable) as exc:
            return {"ok": False, "detail": {"bucket": self.bucket, "error": type(exc).__name__}}
        return {"ok": True, "detail": {"bucket": self.bucket, "prefix": self.prefix}}


def _hash(stream: BinaryIO) -> tuple[str, int]:
    """The CID of the rest of `stream`, and how many bytes that was."""
    hasher, size = CidHasher(), 0
    while piece := stream.read(COPY_CHUNK):
        hasher.update(piece)
        size += len(piece)
    return hasher.cid(), size

"""S3BlobStore against a real S3-compatible server (SeaweedFS, tests/seaweed_fixtures.py): the
BlobStore contract of the local store (round trip, typed errors, first content type kept),
multipart uploads read from disk, the bucket created when missing, namespaces kept apart."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from roomserver.errors import BadRequest, NotFound, Unavailable
from roomserver.store.blobstore import LocalBlobStore
from roomserver.store.cid import cid_for_bytes
from roomserver.store.s3blobs import (
    MIN_PART_SIZE,
    S3BlobStore,
    S3Credentials,
    ensure_bucket,
    open_s3,
)
from tests.seaweed_fixtures import ACCESS_KEY, SECRET_KEY, SeaweedFS

ABSENT = cid_for_bytes(b"never stored")


def credentials(server: SeaweedFS) -> S3Credentials:
    return S3Credentials(endpoint_url=server.endpoint, region="us-east-1",
                         access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)


@pytest.fixture(scope="module")
async def s3(seaweedfs: SeaweedFS) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        yield await open_s3(stack, credentials(seaweedfs))


@pytest.fixture(scope="module")
async def bucket(s3: Any) -> str:
    name = f"rs-test-{uuid.uuid4().hex[:12]}"
    await ensure_bucket(s3, name)
    return name


@pytest.fixture
def store(s3: Any, bucket: str, tmp_path: Path) -> S3BlobStore:
    return S3BlobStore(s3, bucket, f"t-{uuid.uuid4().hex[:8]}/private/", spool_dir=tmp_path)


async def test_put_get_exists_delete_round_trip(store: S3BlobStore) -> None:
    data = "Photosynthesis — λ = 680 nm\n".encode()
    cid = await store.put(data, "text/plain; charset=utf-8")
    assert cid == cid_for_bytes(data)
    assert await store.exists(cid)
    assert await store.get(cid) == data
    assert await store.content_type(cid) == "text/plain; charset=utf-8"
    with await store.open(cid) as f:
        assert f.read() == data
    assert b"".join([piece async for piece in await store.stream(cid)]) == data
    assert [c async for c in store.cids()] == [cid]
    assert store.path(cid) is None
    assert await store.delete(cid) is True
    assert not await store.exists(cid)
    assert await store.delete(cid) is False


async def test_same_bytes_same_cid_first_content_type_kept(store: S3BlobStore) -> None:
    first = await store.put(b"%PDF-1.7 same", "application/pdf")
    second = await store.put_file(io.BytesIO(b"%PDF-1.7 same"), "text/plain")
    assert first == second
    assert await store.content_type(first) == "application/pdf"


async def test_a_missing_key_is_the_same_typed_not_found_as_the_local_store(
        store: S3BlobStore, tmp_path: Path) -> None:
    local = LocalBlobStore(tmp_path / "local")
    assert not await store.exists(ABSENT)
    for backend in (store, local):
        for call in (backend.get, backend.content_type, backend.open, backend.stream):
            with pytest.raises(NotFound) as caught:
                await call(ABSENT)
            assert caught.value.code == "blob_not_found"
            assert caught.value.details == {"cid": ABSENT}
        with pytest.raises(BadRequest) as bad:
            await backend.get("../../etc/passwd")
        assert bad.value.code == "invalid_cid"


async def test_a_file_larger_than_a_part_goes_up_in_parts_from_disk(
        s3: Any, bucket: str, tmp_path: Path) -> None:
    store = S3BlobStore(s3, bucket, f"t-{uuid.uuid4().hex[:8]}/private/", part_size=MIN_PART_SIZE)
    data = os.urandom(2 * MIN_PART_SIZE + 12345)  # three parts
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    cid = await store.put_file(source, "application/pdf")
    assert cid == cid_for_bytes(data)
    head = await s3.head_object(Bucket=store.bucket, Key=store.key(cid), PartNumber=1)
    assert head["PartsCount"] == 3  # a multipart object, not one PUT
    assert head["ContentLength"] == MIN_PART_SIZE
    assert await store.get(cid) == data
    assert await store.content_type(cid) == "application/pdf"
    uploads = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    assert not uploads.get("Uploads")  # none left open


async def test_a_stream_that_cannot_seek_is_spooled_and_stored(store: S3BlobStore) -> None:
    data = os.urandom(MIN_PART_SIZE + 1)

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._src = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            return self._src.readinto(buffer)

    cid = await store.put_file(Pipe(), "application/octet-stream")  # type: ignore[arg-type]
    assert await store.get(cid) == data


async def test_namespaces_are_key_prefixes_that_never_see_each_other(
        s3: Any, bucket: str) -> None:
    public = S3BlobStore(s3, bucket, "ns/public/")
    private = S3BlobStore(s3, bucket, "ns/private/")
    cid = await private.put(b"an upload", "text/plain")
    assert not await public.exists(cid)
    with pytest.raises(NotFound):
        await public.get(cid)
    assert cid not in [c async for c in public.cids()]


async def test_the_bucket_is_created_when_missing_and_objects_carry_no_public_acl(
        s3: Any) -> None:
    name = f"rs-new-{uuid.uuid4().hex[:12]}"
    assert await ensure_bucket(s3, name) is True
    assert await ensure_bucket(s3, name) is False  # a second node finds it
    store = S3BlobStore(s3, name, "p/")
    cid = await store.put(b"private by default", "text/plain")
    assert await store.get(cid) == b"private by default"
    acl = await s3.get_object_acl(Bucket=name, Key=store.key(cid))
    uris = [grant["Grantee"].get("URI") or "" for grant in acl["Grants"]]
    assert not any(uri.endswith(("/AllUsers", "/AuthenticatedUsers")) for uri in uris), acl


async def test_an_unreachable_store_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    from roomserver.store.ports import free_port

    async with AsyncExitStack() as stack:
        dead = await open_s3(stack, S3Credentials(endpoint_url=f"http://127.0.0.1:{free_port()}",
                                                  region="us-east-1", access_key_id="a",
                                                  secret_access_key="b"))
        store = S3BlobStore(dead, "nobucket", "p/")
        with pytest.raises(Unavailable) as caught:
            await store.get(ABSENT)
        assert caught.value.code == "blob_store_unavailable"
        assert (await store.health())["ok"] is False


def test_part_size_below_the_s3_minimum_is_refused(s3: Any) -> None:
    with pytest.raises(ValueError):
        S3BlobStore(s3, "bucket", "p/", part_size=MIN_PART_SIZE - 1)


async def test_a_multipart_upload_holds_about_one_part_in_memory(
        s3: Any, bucket: str, tmp_path: Path) -> None:
    import tracemalloc

    store = S3BlobStore(s3, bucket, f"t-{uuid.uuid4().hex[:8]}/private/", part_size=MIN_PART_SIZE)
    source = tmp_path / "large.bin"
    with source.open("wb") as out:
        for _ in range(8):
            out.write(os.urandom(MIN_PART_SIZE))  # 40 MiB, 8 parts
    tracemalloc.start()
    try:
        cid = await store.put_file(source, "application/pdf")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert await store.exists(cid)
    assert peak < 3 * MIN_PART_SIZE, f"peak {peak / 2**20:.1f} MiB for a 40 MiB file"

"""Blob stores: content addressing, immutability, streaming puts, atomic writes, typed errors."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from roomserver.errors import BadRequest, NotFound
from roomserver.store.blobstore import (
    BlobStore,
    LocalBlobStore,
    MemoryBlobStore,
    split_legacy_layout,
)
from roomserver.store.cid import cid_for_bytes

ABSENT = cid_for_bytes(b"never stored")


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobStore()
    return LocalBlobStore(tmp_path / "blobs")


async def test_put_get_round_trip_under_the_ipfs_cid(store: BlobStore) -> None:
    data = "Photosynthesis — λ = 680 nm\n".encode()
    cid = await store.put(data, "text/plain; charset=utf-8")
    assert cid == cid_for_bytes(data)
    assert await store.get(cid) == data
    assert await store.exists(cid)
    assert await store.content_type(cid) == "text/plain; charset=utf-8"
    with await store.open(cid) as f:
        assert f.read() == data


async def test_same_bytes_same_cid_first_content_type_kept(store: BlobStore) -> None:
    first = await store.put(b"%PDF-1.7 same", "application/pdf")
    second = await store.put(b"%PDF-1.7 same", "text/plain")
    assert first == second
    assert await store.content_type(first) == "application/pdf"


async def test_put_file_streams_path_and_stream(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several copy pieces
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    by_path = await store.put_file(source, "application/pdf")
    by_stream = await store.put_file(io.BytesIO(data), "application/pdf")
    assert by_path == by_stream == cid_for_bytes(data)
    assert await store.get(by_path) == data


async def test_missing_and_malformed_cids_are_typed_errors(store: BlobStore) -> None:
    assert not await store.exists(ABSENT)
    for call in (store.get, store.content_type, store.open):
        with pytest.raises(NotFound) as info:
            await call(ABSENT)
        assert info.value.code == "blob_not_found"
    for bad in ("../../etc/passwd", "bafk", ABSENT.upper()):
        with pytest.raises(BadRequest) as bad_info:
            await store.get(bad)
        assert bad_info.value.code == "invalid_cid"
        with pytest.raises(BadRequest):
            store.path(bad)


@pytest.mark.parametrize("content_type", ["", "text/plain\r\nX-Evil: 1", "plain", "tëxt/plain"])
async def test_rejects_unsafe_content_types(store: BlobStore, content_type: str) -> None:
    with pytest.raises(BadRequest) as info:
        await store.put(b"x", content_type)
    assert info.value.code == "invalid_content_type"


async def test_memory_store_has_no_local_path() -> None:
    store = MemoryBlobStore()
    cid = await store.put(b"abc", "text/plain")
    assert store.path(cid) is None


async def test_local_store_files_are_sharded_and_survive_reopen(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    cid = await LocalBlobStore(root).put(b"durable", "text/markdown")
    reopened = LocalBlobStore(root)
    path = reopened.path(cid)
    assert path is not None and path.read_bytes() == b"durable"
    assert path.parent.parent == root and path.name == cid
    assert await reopened.content_type(cid) == "text/markdown"
    assert reopened.path(ABSENT) is None
    assert list((root / "tmp").iterdir()) == []


class BrokenStream(io.RawIOBase):
    """Yields some bytes, then fails like a dropped upload."""

    def __init__(self) -> None:
        self._pieces: Iterator[bytes] = iter([b"a" * (1 << 20), b"b" * 1000])

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return next(self._pieces)
        except StopIteration:
            raise ConnectionResetError("client went away") from None


async def test_interrupted_put_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    with pytest.raises(ConnectionResetError):
        await store.put_file(BrokenStream(), "application/pdf")  # type: ignore[arg-type]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files == []
    partial = b"a" * (1 << 20) + b"b" * 1000
    assert not await store.exists(cid_for_bytes(partial))


async def test_delete_and_listing(store: BlobStore) -> None:
    first, second = await store.put(b"one", "text/plain"), await store.put(b"two", "text/plain")
    assert sorted([cid async for cid in store.cids()]) == sorted([first, second])
    assert await store.delete(first) is True
    assert await store.delete(first) is False
    assert not await store.exists(first) and await store.exists(second)
    assert [cid async for cid in store.cids()] == [second]
    with pytest.raises(NotFound):
        await store.get(first)
    with pytest.raises(BadRequest):
        await store.delete("not-a-cid")
    assert await store.put(b"one", "application/json") == first  # stored afresh, new type
    assert await store.content_type(first) == "application/json"


def test_the_old_single_namespace_layout_is_split(tmp_path: Path) -> None:
    upload, card = cid_for_bytes(b"an upload"), cid_for_bytes(b"a card")
    for cid, data in ((upload, b"an upload"), (card, b"a card")):
        shard = tmp_path / cid[-3:-1]
        shard.mkdir(exist_ok=True)
        (shard / cid).write_bytes(data)
        (shard / f"{cid}.type").write_text("text/plain")
    assert split_legacy_layout(tmp_path, {upload}.__contains__) == 2
    assert (tmp_path / "private" / upload[-3:-1] / upload).read_bytes() == b"an upload"
    assert (tmp_path / "public" / card[-3:-1] / f"{card}.type").read_text() == "text/plain"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private", "public"]
    assert split_legacy_layout(tmp_path, {upload}.__contains__) == 0

"""LocalBlobStore's temporary files: what an interrupted write left behind goes when the store is
opened (start-up), once stale; a write in progress (a fresh file, maybe another process's) stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

from roomserver.store.blobstore import STALE_TMP_SECONDS, LocalBlobStore


def _leftover(tmp: Path, name: str, age: float) -> Path:
    path = tmp / name
    path.write_bytes(b"partial")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


async def test_opening_the_store_removes_stale_temporary_files_only(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    cid = await store.put(b"kept", "text/plain")
    tmp = tmp_path / "tmp"
    stale = [_leftover(tmp, f"blob-{i}", STALE_TMP_SECONDS + 60) for i in range(3)]
    stale.append(_leftover(tmp, "type-x", STALE_TMP_SECONDS * 24))
    fresh = _leftover(tmp, "blob-writing", 5)

    reopened = LocalBlobStore(tmp_path)  # what start-up does
    assert not any(path.exists() for path in stale)
    assert fresh.exists()
    assert await reopened.get(cid) == b"kept"  # blobs themselves are never touched
    assert await reopened.put(b"after", "text/plain")  # and the store still writes


async def test_clear_temporary_reports_what_it_removed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    tmp = tmp_path / "tmp"
    _leftover(tmp, "blob-a", 10)
    _leftover(tmp, "blob-b", 1000)
    (tmp / "not-a-file").mkdir()  # not ours: left alone, no error
    assert store.clear_temporary(older_than=100) == 1
    assert store.clear_temporary() == 1
    assert sorted(p.name for p in tmp.iterdir()) == ["not-a-file"]

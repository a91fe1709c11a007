"""GET /ipfs/{cid} over HTTP: the public blob store, read-only, with immutable caching."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from roomserver.config import Settings
from roomserver.ledger.process import LedgerProcess
from roomserver.store.blobstore import LocalBlobStore
from roomserver.store.ports import free_port

# `printf 'hello world' | ipfs add --cid-version=1 --raw-leaves -Q`
HELLO_WORLD_CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory, ledger: LedgerProcess) -> Settings:
    port = free_port()
    return Settings.from_env({}, database_url=database_url, data_dir=Path(tmp_path_factory.mktemp("data")),
                             port=port, public_origin=f"http://127.0.0.1:{port}", solana_rpc_url=ledger.url)


async def test_stored_bytes_are_served_under_the_ipfs_reference_cid(settings: Settings, http: httpx.AsyncClient) -> None:
    store = LocalBlobStore(settings.data_dir.resolve() / "blobs" / "public")  # the namespace the app serves
    assert await store.put(b"hello world", "text/plain; charset=utf-8") == HELLO_WORLD_CID
    response = await http.get(f"/ipfs/{HELLO_WORLD_CID}")
    assert response.status_code == 200 and response.content == b"hello world"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["etag"] == f'"{HELLO_WORLD_CID}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    again = await http.get(f"/ipfs/{HELLO_WORLD_CID}", headers={"If-None-Match": f'"{HELLO_WORLD_CID}"'})
    assert again.status_code == 304 and again.content == b""


async def test_unknown_and_malformed_cids_are_typed_errors(http: httpx.AsyncClient) -> None:
    unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # the empty block, never stored here
    missing = await http.get(f"/ipfs/{unknown}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "blob_not_found"
    for bad in ("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", HELLO_WORLD_CID.upper(), "b" + "a" * 58, "not-a-cid"):
        response = await http.get(f"/ipfs/{bad}")
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_cid"
    assert (await http.post(f"/ipfs/{HELLO_WORLD_CID}")).status_code == 405

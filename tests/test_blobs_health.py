"""A node on object storage whose store goes away: `/ready` turns 503 while `/health`
(liveness) stays 200 (the `blobs` component down in the operator's detail), a download answers 503 `blob_store_unavailable`
rather than a broken stream, and both recover when the store is back. A SeaweedFS of this
module's own, stopped and started again on the same ports and data."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from roomserver.config import Settings
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.library_fixtures import upload
from tests.seaweed_fixtures import ACCESS_KEY, SECRET_KEY, SeaweedFS
from tests.servers import run_app

OPERATOR = "operator-token-for-the-blob-health-test"


@pytest.fixture(scope="module")
def own_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("own-seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def node(settings: Settings, own_store: SeaweedFS) -> AsyncIterator[str]:
    on_s3 = dataclasses.replace(
        settings, port=free_port(), blob_store_url=f"s3://rs-health-{uuid.uuid4().hex[:10]}/node",
        aws_endpoint_url=own_store.endpoint, aws_region="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SecretStr(SECRET_KEY), operator_token=SecretStr(OPERATOR))
    async with run_app(on_s3) as url:
        yield url


async def _blobs_ok(http: httpx.AsyncClient) -> tuple[int, bool]:
    """(`/ready`'s status, the blobs component's `ok`); `/health` is 200 throughout."""
    await asyncio.sleep(1.1)  # past the public verdict's one-second cache
    assert (await http.get("/health")).status_code == 200
    ready = await http.get("/ready")
    detail = await http.get("/health/detail", headers={"Authorization": f"Bearer {OPERATOR}"})
    return ready.status_code, bool(detail.json()["components"]["blobs"]["ok"])


async def test_a_stopped_object_store_makes_the_node_unready_and_downloads_fail_then_recovers(
        node: str, own_store: SeaweedFS) -> None:
    async with httpx.AsyncClient(base_url=node, timeout=60) as http:
        alice = await sign_in(http)
        content = f"Kept in the bucket {uuid.uuid4()}\n".encode()
        uploaded = await upload(http, alice, content, "kept.txt")
        assert uploaded.status_code == 202, uploaded.text
        path = f"/api/v1/documents/{uploaded.json()['document']['id']}/download"
        assert (await http.get(path, headers=alice.headers)).content == content
        assert await _blobs_ok(http) == (200, True)

        own_store.stop()
        assert await _blobs_ok(http) == (503, False)
        refused = await http.get(path, headers=alice.headers)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "blob_store_unavailable"

        own_store.start()
        deadline = time.monotonic() + 30
        while await _blobs_ok(http) != (200, True):
            assert time.monotonic() < deadline, "the node did not see the object store come back"
        again = await http.get(path, headers=alice.headers)
        assert again.status_code == 200 and again.content == content

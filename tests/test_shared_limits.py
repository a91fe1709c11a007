"""Per-minute limits shared by two real `serve` nodes on one Redis: requests split across the
nodes are refused at one budget, not one per node (issue 14 part 3)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.redis_fixtures import RedisServer
from tests.servers import run_process

pytestmark = pytest.mark.slow

PER_MINUTE = 60  # the user's REST bucket: burst max(10, 60 // 4) = 15, refilled 1 per second


@pytest.fixture(scope="module")
def nodes(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    redis = RedisServer()
    redis.start()
    origin_port = free_port()
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis.url, "LOG_LEVEL": "warning",
            "PUBLIC_ORIGIN": f"http://127.0.0.1:{origin_port}",
            "RATE_LIMIT_PER_MINUTE": str(PER_MINUTE)}
    logs = tmp_path_factory.mktemp("limit-logs")
    try:
        with contextlib.ExitStack() as stack:
            urls = []
            for name, port in (("a", origin_port), ("b", free_port())):
                env = {**base, "DATA_DIR": str(tmp_path_factory.mktemp(f"limit-node-{name}"))}
                url, _ = stack.enter_context(run_process(env, port=port, log=Path(logs / f"{name}.log")))
                urls.append(url)
            yield urls
    finally:
        redis.stop()


async def test_a_users_rest_budget_is_one_across_two_nodes(nodes: list[str]) -> None:
    async with httpx.AsyncClient(base_url=nodes[0], timeout=30) as http:
        user = await sign_in(http)
    codes: dict[str, list[int]] = {url: [] for url in nodes}
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(40):  # 20 on each node, alternating
            url = nodes[i % 2]
            answer = await http.get(f"{url}/api/v1/rooms", headers=user.headers)
            codes[url].append(answer.status_code)
            if answer.status_code == 429:
                assert answer.json()["error"]["code"] == "rate_limited"
    elapsed = time.monotonic() - started
    admitted = sum(codes[url].count(200) for url in nodes)
    refused = sum(codes[url].count(429) for url in nodes)
    assert admitted + refused == 40, codes
    # one bucket of 15 (plus what refilled meanwhile, 1/s); per-node buckets would admit 30+
    assert 15 <= admitted <= 15 + int(elapsed) + 1, (admitted, elapsed, codes)
    assert all(429 in codes[url] for url in nodes), codes  # each node refuses from the shared count

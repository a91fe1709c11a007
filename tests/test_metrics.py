"""/metrics on a real node: Prometheus text that parses, names by convention, labels of
bounded sets only, and counters that move when people connect and chat."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import sign_in
from tests.servers import run_process
from tests.ws_client import RoomClient, create_room

REQUIRED = {
    "roomserver_ws_connections": "gauge", "roomserver_ws_connects": "counter",
    "roomserver_ws_disconnects": "counter", "roomserver_messages_received": "counter",
    "roomserver_messages_delivered": "counter", "roomserver_fanout_latency_seconds": "histogram",
    "roomserver_durable_write_seconds": "histogram", "roomserver_slow_consumer_disconnects": "counter",
    "roomserver_recoveries": "counter", "roomserver_broker_up": "gauge",
    "roomserver_broker_outages": "counter", "roomserver_http_requests": "counter",
    "roomserver_http_request_duration_seconds": "histogram", "roomserver_db_pool_in_use": "gauge",
    "roomserver_gate_checks": "counter", "roomserver_rpc_request_duration_seconds": "histogram",
    "roomserver_tutor_tokens": "counter", "roomserver_ingest_jobs": "counter",
    "roomserver_nft_mints": "counter", "roomserver_fee_payer_lamports": "gauge",
}
"""Family name (as the parser reports it: counters without `_total`) -> type."""
BOUNDED_LABELS = {"result", "code", "type", "route", "method", "status", "complete", "direction",
                  "mode", "le"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, for every sample of the exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def total(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in scraped.items() if n == name)


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await http.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


async def test_metrics_parse_with_every_family_and_bounded_labels(http: httpx.AsyncClient) -> None:
    answer = await http.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    for name, kind in REQUIRED.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name].type == kind, (name, families[name].type)
    for family in families.values():
        if family.name.startswith("roomserver_"):
            for s in family.samples:
                assert set(s.labels) <= BOUNDED_LABELS, (s.name, s.labels)


async def test_counters_move_under_traffic(http: httpx.AsyncClient, base_url: str) -> None:
    before = await scrape(http)
    alice, bob = await sign_in(http), await sign_in(http)
    room = await create_room(http, alice)
    clients = [await RoomClient.open(base_url, user, room) for user in (alice, bob)]
    await clients[0].request(type="chat_message", text="counted", client_msg_id="m1")
    for client in clients:  # (the sender may get its message before its ack)
        if not [f for f in client.frames if f["type"] == "new_message"]:
            await client.wait_for(lambda f: f["type"] == "new_message")
    during = await scrape(http)
    assert value(during, "roomserver_ws_connections") - value(before, "roomserver_ws_connections") == 2
    await clients[1].close()
    resumed = await RoomClient.open(base_url, bob, room, last_seq=0)
    await resumed.wait_for(lambda f: f["type"] == "recovered")
    for client in (clients[0], resumed):
        await client.close()
    after = await scrape(http)

    def rose(name: str, by: float = 1, **labels: str) -> None:
        grew = value(after, name, **labels) - value(before, name, **labels)
        assert grew >= by, f"{name}{labels} rose by {grew}, expected >= {by}"

    rose("roomserver_ws_connects_total", 3, result="joined")
    rose("roomserver_messages_received_total", 1, type="chat_message")
    rose("roomserver_messages_delivered_total", 2)  # one frame, two sockets
    rose("roomserver_fanout_latency_seconds_count")
    rose("roomserver_durable_write_seconds_count")
    rose("roomserver_recoveries_total", complete="true")
    rose("roomserver_ws_disconnects_total", 1, code="1000")
    rose("roomserver_http_requests_total", 2, route="/api/v1/auth/wallet/verify", method="POST", status="200")
    rose("roomserver_http_request_duration_seconds_count", 1, route="/api/v1/rooms")
    assert value(after, "roomserver_broker_up") == 1
    # route templates only: no concrete room id ever becomes a label value
    assert not [key for key in after if room in str(key)]
    unmatched = await http.get(f"/no/such/{room}")
    assert unmatched.status_code == 404
    scraped = await scrape(http)
    assert value(scraped, "roomserver_http_requests_total", route="unmatched", method="GET", status="404") >= 1
    assert total(scraped, "roomserver_rpc_request_duration_seconds_count") >= 0


async def test_request_id_is_echoed_or_made(http: httpx.AsyncClient) -> None:
    given = await http.get("/health", headers={"X-Request-ID": "lb-1234.abc"})
    assert given.headers["x-request-id"] == "lb-1234.abc"
    made = await http.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["x-request-id"] != "bad id\twith spaces" and len(made.headers["x-request-id"]) == 32


def per_worker_requests(directory: Path) -> dict[str, float]:
    """pid -> HTTP requests that worker counted, read from its own multiprocess file."""
    out = {}
    for path in directory.glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(path)])
        out[path.stem.split("_", 1)[1]] = sum(
            s.value for f in families if f.name == "roomserver_http_requests" for s in f.samples
            if s.name.endswith("_total"))
    return out


async def test_two_workers_are_aggregated(database_url: str, redis_url: str, tmp_path: Path) -> None:
    """`serve --workers 2`: whichever worker answers /metrics reports both workers' counts."""
    data = tmp_path / "data"
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(data),
           "RATE_LIMIT_PER_MINUTE": "100000", "LOG_LEVEL": "warning"}
    stale = data / "prometheus"
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"stale")  # an earlier run's file: emptied at start
    with run_process(env, args=("--workers", "2")) as (url, _proc):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            user = await sign_in(http)
            room = await create_room(http, user)
            for _ in range(60):  # new connections: the kernel spreads them over the workers
                async with httpx.AsyncClient(base_url=url, timeout=30) as one:
                    assert (await one.get("/health")).status_code == 200
            clients = [await RoomClient.open(url, user, room) for _ in range(4)]
            workers = per_worker_requests(stale)
            assert not (stale / "counter_1.db").exists()
            assert len([pid for pid, n in workers.items() if n > 0]) == 2, workers
            for _ in range(6):  # several scrapes, several connections: both workers answer
                async with httpx.AsyncClient(base_url=url, timeout=30) as one:
                    scraped = await scrape(one)
                assert value(scraped, "roomserver_ws_connections") == 4
                assert value(scraped, "roomserver_http_requests_total", route="/health",
                             method="GET", status="200") >= 60
                assert value(scraped, "roomserver_ws_connects_total", result="joined") == 4
            for client in clients:
                await client.close()

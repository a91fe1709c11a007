"""The server's Prometheus metrics: one `Metrics` object per process, built in the lifespan
and passed to the services at construction, and `render` for `GET /metrics`.

Names follow the Prometheus conventions (`roomserver_` prefix, base units, `_total` on
counters); every label has a small fixed set of values (never a user, room, socket or raw
path: HTTP routes are the route TEMPLATES). docs/operations.md lists them.

Two modes (prometheus-client's own, chosen when the library is first imported):
- one process: the metrics live in this object's own `CollectorRegistry`, which `render`
  exposes; several apps in one process (the tests) never share a value.
- multiprocess (`serve --workers N` sets `PROMETHEUS_MULTIPROC_DIR` for its workers, emptied
  at start): every worker writes its values to files in that directory and `render`, in
  whichever worker answers, aggregates all of them (counters and histograms summed over every
  worker that ever ran, gauges per `multiprocess_mode`). The object's registry then only
  keeps the names unique; the exposition registry is a fresh `MultiProcessCollector`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as mp

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's own variable: set, every process writes its values to files there."""
CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: from a millisecond (a local fan-out) to ten (a slow RPC or a repair)."""

Sampler = Callable[[], None]
"""Sets gauges from current state (pool use, ...); run before each render and periodically."""


def _counter(registry: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, labels, registry=registry)


def _histogram(registry: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
    return Histogram(name, doc, labels, registry=registry, buckets=LATENCY_BUCKETS)


@dataclass(eq=False)
class Metrics:
    """Every metric the server keeps (see docs/operations.md for what each one counts)."""

    multiprocess_dir: str | None = None
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    samplers: list[Sampler] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.registry
        # the socket edge
        self.ws_connections = Gauge("roomserver_ws_connections", "Open room sockets (joined)",
                                    registry=r, multiprocess_mode="livesum")
        self.ws_connects = _counter(r, "roomserver_ws_connects", "Room socket handshakes by outcome (joined, refused)", ("result",))
        self.ws_disconnects = _counter(r, "roomserver_ws_disconnects", "Joined room sockets closed, by close code", ("code",))
        self.messages_received = _counter(r, "roomserver_messages_received", "Client frames received on joined sockets, by frame type", ("type",))
        self.messages_delivered = _counter(r, "roomserver_messages_delivered", "Server frames handed to local sockets by the hub's fan-out")
        self.fanout_latency = _histogram(r, "roomserver_fanout_latency_seconds", "From a message's commit (its created_at) to the last local socket write of it")
        self.durable_write = _histogram(r, "roomserver_durable_write_seconds", "One durable room event (or group-commit batch) written to Postgres")
        self.slow_consumer_disconnects = _counter(r, "roomserver_slow_consumer_disconnects", "Sockets closed for a full backlog (close 4001)")
        self.recoveries = _counter(r, "roomserver_recoveries", "Resumes (last_seq or resume frame) by whether the replay was complete", ("complete",))
        self.broker_up = Gauge("roomserver_broker_up", "1 while the broker's subscriber is connected (min over workers)",
                               registry=r, multiprocess_mode="livemin")
        self.broker_outages = _counter(r, "roomserver_broker_outages", "Times the broker's subscriber lost its connection")
        # the REST edge
        self.http_requests = _counter(r, "roomserver_http_requests", "HTTP requests by route template, method and status", ("route", "method", "status"))
        self.http_duration = _histogram(r, "roomserver_http_request_duration_seconds", "HTTP request handling time by route template", ("route",))
        # resources and domains
        self.db_pool_in_use = Gauge("roomserver_db_pool_in_use", "PostgreSQL pool connections checked out",
                                    registry=r, multiprocess_mode="livesum")
        self.gate_checks = _counter(r, "roomserver_gate_checks", "Token/NFT gate checks by outcome (allowed, refused, unavailable)", ("result",))
        self.rpc_duration = _histogram(r, "roomserver_rpc_request_duration_seconds", "Solana RPC requests by client method", ("method",))
        self.tutor_tokens = _counter(r, "roomserver_tutor_tokens", "Tutor model tokens by direction (input, output)", ("direction",))
        self.ingest_jobs = _counter(r, "roomserver_ingest_jobs", "Finished ingestion jobs by result (ready, failed, lost)", ("result",))
        self.nft_mints = _counter(r, "roomserver_nft_mints", "Mint requests and confirmations by mode and result", ("mode", "result"))
        self.fee_payer_lamports = Gauge("roomserver_fee_payer_lamports", "Lamports the sponsored-mint fee payer holds (last read)",
                                        registry=r, multiprocess_mode="livemostrecent")

    @classmethod
    def from_environ(cls) -> Metrics:
        """Multiprocess when `PROMETHEUS_MULTIPROC_DIR` is set (prometheus-client reads it too)."""
        return cls(multiprocess_dir=os.environ.get(MULTIPROC_ENV) or None)

    @classmethod
    @functools.cache
    def unexposed(cls) -> Metrics:
        """One private set per process for parts built without the app's (unit tests)."""
        return cls()

    def sample(self) -> None:
        for sampler in self.samplers:
            sampler()

    def render(self) -> bytes:
        """The text exposition: this process's registry, or every worker's files aggregated."""
        self.sample()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def close(self) -> None:
        """This process is going away: its live gauges stop counting (multiprocess mode)."""
        if self.multiprocess_dir is not None:
            mp.mark_process_dead(os.getpid(), self.multiprocess_dir)


def prepare_multiprocess_dir(directory: Path) -> Path:
    """Empty (or create) `directory` for a new set of workers, as prometheus-client requires
    (stale files of an earlier run would be counted again)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory

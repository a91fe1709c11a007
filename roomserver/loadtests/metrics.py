"""What a replay measures, per worker, and how workers' measurements merge into one result.

Durable delivery is judged per stream (one virtual user's view of one room, across its
reconnects): seqs must arrive in order, each once, without gaps after the baseline the
`welcome` gave. A seq that arrives after a later one is out of order; one that arrives twice
is a duplicate; one that never arrives (a gap, or the tail below the room's last seq for a
stream still connected at the end) is lost. A `recovered {complete:false}` forgives the gap
it names: the protocol says to reload that range over REST.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_GAP = 1_000_000


@dataclass
class Stream:
    """One virtual user's durable events of one room."""

    high: int = -1
    missing: set[int] = field(default_factory=set)
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    connected: bool = False

    def baseline(self, seq: int) -> None:
        """A fresh join: everything after `seq` is expected."""
        self.high = max(self.high, seq)

    def deliver(self, seq: int) -> None:
        if self.high < 0:
            self.high = seq - 1  # no welcome seen: start from the first delivery
        if seq > self.high:
            if seq - self.high - 1 <= MAX_GAP:
                self.missing.update(range(self.high + 1, seq))
            self.high = seq
            self.received += 1
        elif seq in self.missing:
            self.missing.discard(seq)
            self.out_of_order += 1
            self.received += 1
        else:
            self.duplicates += 1

    def forgive(self, up_to: int) -> None:
        """An incomplete recovery: the range up to `up_to` is for REST to fill."""
        self.missing = {s for s in self.missing if s > up_to}
        self.high = max(self.high, up_to)


@dataclass
class Measurements:
    """Everything one worker counts; `summary()` is plain data for the parent to merge."""

    start_wall: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    connect_failures: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    rest_retries: Counter[str] = field(default_factory=Counter)
    latency_at: array[float] = field(default_factory=lambda: array("d"))
    latency: array[float] = field(default_factory=lambda: array("d"))
    ack_latency: array[float] = field(default_factory=lambda: array("d"))
    recovery: array[float] = field(default_factory=lambda: array("d"))
    tutor: array[float] = field(default_factory=lambda: array("d"))
    streams: dict[tuple[str, str], Stream] = field(default_factory=dict)
    room_high: dict[str, int] = field(default_factory=dict)

    def stream(self, room: str, user: str) -> Stream:
        key = (room, user)
        found = self.streams.get(key)
        if found is None:
            found = self.streams[key] = Stream()
        return found

    def saw_seq(self, room: str, seq: int) -> None:
        if seq > self.room_high.get(room, -1):
            self.room_high[room] = seq

    def snapshot(self) -> dict[str, Any]:
        """A small live view for the progress line."""
        recent = self.latency[-2000:]
        return {"sockets": self.counts["open_sockets"], "sent": sum(self.sent.values()),
                "delivered": self.received_durable, "p99": percentile(sorted(recent), 99),
                "lost_so_far": sum(len(s.missing) for s in self.streams.values()),
                "dup": sum(s.duplicates for s in self.streams.values()),
                "errors": sum(self.errors.values()), "reconnects": self.counts["reconnects"],
                "conn_failures": sum(self.connect_failures.values())}

    @property
    def received_durable(self) -> int:
        return self.counts["durable_deliveries"]

    def summary(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts), "sent": dict(self.sent), "received": dict(self.received),
            "errors": dict(self.errors), "connect_failures": dict(self.connect_failures),
            "drops": dict(self.drops), "skipped": dict(self.skipped),
            "rest_retries": dict(self.rest_retries), "latency_at": self.latency_at.tolist(), "latency": self.latency.tolist(),
            "ack_latency": self.ack_latency.tolist(), "recovery": self.recovery.tolist(),
            "tutor": self.tutor.tolist(), "room_high": dict(self.room_high),
            "streams": [[room, user, s.high, sorted(s.missing), s.received, s.duplicates,
                         s.out_of_order, s.connected] for (room, user), s in self.streams.items()],
        }


def percentile(ordered: list[float] | array[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def spread_ms(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    pick = {f"p{q}": percentile(ordered, q) for q in (50, 90, 99)}
    pick["max"] = ordered[-1] if ordered else None
    return {"count": len(ordered), **{k: None if v is None else round(v * 1000, 2) for k, v in pick.items()}}


def merge(parts: list[dict[str, Any]], played_seconds: float) -> dict[str, Any]:
    """Combine workers' summaries into the result document (see docs/loadtests.md)."""
    total: dict[str, Counter[str]] = {k: Counter() for k in
                                      ("counts", "sent", "received", "errors", "connect_failures",
                                       "drops", "skipped", "rest_retries")}
    samples: dict[str, list[float]] = {k: [] for k in ("latency_at", "latency", "ack_latency",
                                                        "recovery", "tutor")}
    room_high: dict[str, int] = {}
    streams: list[list[Any]] = []
    for part in parts:
        for key, counter in total.items():
            counter.update(part[key])
        for key, values in samples.items():
            values.extend(part[key])
        for room, seq in part["room_high"].items():
            room_high[room] = max(room_high.get(room, -1), seq)
        streams.extend(part["streams"])
    durable = _judge(streams, room_high)
    counts = total["counts"]
    delivered = counts["durable_deliveries"]
    return {
        "ok": durable["lost"] == 0 and durable["out_of_order"] == 0,
        "played_seconds": round(played_seconds, 3),
        "sockets": {"opened": counts["connects"], "peak": counts["peak_sockets"],
                    "failed": dict(total["connect_failures"]), "dropped_by_server": dict(total["drops"]),
                    "reconnects": counts["reconnects"]},
        "sent": dict(total["sent"]), "acked": counts["acks"], "unacked": counts["unacked"],
        "refused": dict(total["errors"]), "skipped": dict(total["skipped"]),
        "received": dict(total["received"]),
        "deliveries": {"durable": delivered, "frames": counts["frames"],
                       "durable_per_second": round(delivered / played_seconds, 1) if played_seconds else 0.0},
        "latency_ms": spread_ms(samples["latency"]),
        "ack_latency_ms": spread_ms(samples["ack_latency"]),
        "recovery": {"complete": counts["recovered_complete"], "incomplete": counts["recovered_incomplete"],
                     "ms": spread_ms(samples["recovery"])},
        "tutor": {"asked": total["sent"].get("socratic_query", 0), "answered": counts["tutor_answers"],
                  "answer_ms": spread_ms(samples["tutor"])},
        "durable": durable,
        "rest_retries": dict(total["rest_retries"]),
        "timeline": timeline(samples["latency_at"], samples["latency"]),
    }


def _judge(streams: list[list[Any]], room_high: dict[str, int]) -> dict[str, Any]:
    lost = dup = ooo = gaps = tail = 0
    rooms: dict[str, dict[str, int]] = {}
    for room, _user, high, missing, _received, duplicates, out_of_order, connected in streams:
        behind = max(0, room_high.get(room, -1) - high) if connected and high >= 0 else 0
        gaps += len(missing)
        tail += behind
        lost += len(missing) + behind
        dup += duplicates
        ooo += out_of_order
        entry = rooms.setdefault(room, {"seq": room_high.get(room, -1), "streams": 0, "lost": 0,
                                        "duplicated": 0, "out_of_order": 0})
        entry["streams"] += 1
        entry["lost"] += len(missing) + behind
        entry["duplicated"] += duplicates
        entry["out_of_order"] += out_of_order
    return {"lost": lost, "lost_in_gaps": gaps, "lost_at_tail": tail, "duplicated": dup,
            "out_of_order": ooo, "streams": len(streams), "rooms": rooms}


def timeline(at: list[float], latency: list[float]) -> list[dict[str, Any]]:
    """Per second of the run: deliveries with a stamp and their latency p50/p99/max (ms)."""
    buckets: dict[int, list[float]] = {}
    for t, value in zip(at, latency, strict=True):
        buckets.setdefault(int(t), []).append(value)
    rows = []
    for second in sorted(buckets):
        ordered = sorted(buckets[second])
        rows.append({"t": second, "deliveries": len(ordered),
                     "p50_ms": round((percentile(ordered, 50) or 0) * 1000, 2),
                     "p99_ms": round((percentile(ordered, 99) or 0) * 1000, 2),
                     "max_ms": round(ordered[-1] * 1000, 2)})
    return rows

"""Runs a replay in this process or in N worker processes (each with a share of the rooms),
shows a live progress line, and merges the workers' measurements into one result."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import sys
import time
from dataclasses import asdict
from typing import Any, TextIO

from roomserver.loadtests.metrics import merge
from roomserver.loadtests.replay import Options, create_rooms, run_shard, select
from roomserver.realtime.trace import TraceEvent

START_DELAY = 1.0
"""Seconds between the last worker becoming ready and the common start."""


def shards(events: list[TraceEvent], workers: int) -> list[list[TraceEvent]]:
    """Rooms dealt round-robin (in order of appearance) to `workers` shares; empty shares dropped."""
    order: dict[str, int] = {}
    parts: list[list[TraceEvent]] = [[] for _ in range(max(1, workers))]
    for event in events:
        index = order.setdefault(event.room, len(order) % len(parts))
        parts[index].append(event)
    return [p for p in parts if p]


class ProgressLine:
    """Prints the merged live numbers about once a second (stderr; one line, rewritten on a tty)."""

    def __init__(self, out: TextIO | None = None, enabled: bool = True) -> None:
        self.out = out or sys.stderr
        self.enabled = enabled
        self.latest: dict[int, dict[str, Any]] = {}

    def update(self, worker: int, snap: dict[str, Any]) -> None:
        self.latest[worker] = snap
        if not self.enabled:
            return
        snaps = list(self.latest.values())

        def total(key: str) -> int:
            return sum(int(s.get(key) or 0) for s in snaps)
        elapsed = max(s["elapsed"] for s in snaps)
        p99 = max((s["p99"] or 0) for s in snaps) * 1000
        phase = "drain" if all(s["draining"] for s in snaps) else "play"
        line = (f"[{elapsed:7.1f}s {phase}] sockets {total('sockets')} | sent {total('sent')} | "
                f"delivered {total('delivered')} ({total('delivered') / max(elapsed, 0.001):.0f}/s) | "
                f"p99 {p99:.0f} ms | gaps {total('lost_so_far')} dup {total('dup')} | "
                f"errors {total('errors')} | conn fail {total('conn_failures')} | reconnects {total('reconnects')}")
        if self.out.isatty():
            self.out.write("\r" + line[:200] + "\x1b[K")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.enabled and self.out.isatty():
            self.out.write("\n")


async def replay(events: list[TraceEvent], opts: Options, progress: ProgressLine | None = None) -> dict[str, Any]:
    """Set up the rooms, play the trace with `opts.workers` workers, and return the result."""
    events = select(events, opts)
    progress = progress or ProgressLine(enabled=opts.progress)
    run = f"lt{int(time.time()):x}"
    rooms = await create_rooms(opts, events)
    parts = shards(events, opts.workers)
    started = time.monotonic()
    if len(parts) == 1:
        async def ready() -> float:
            return time.time() + START_DELAY
        results = [await run_shard(parts[0], rooms, opts, run, ready, lambda s: progress.update(0, s))]
    else:
        results = await asyncio.to_thread(_run_processes, parts, rooms, opts, run, progress)
    progress.done()
    played = max(r["played_seconds"] for r in results)
    result = merge(results, played)
    result["config"] = {**asdict(opts), "events": len(events), "rooms": len(rooms),
                        "users": len({e.user for e in events}), "workers": len(parts)}
    result["wall_seconds"] = round(time.monotonic() - started, 3)
    return result


def _run_processes(parts: list[list[TraceEvent]], rooms: dict[str, str], opts: Options, run: str,
                   progress: ProgressLine) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    inbox = ctx.Queue()
    go = ctx.Event()
    start = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_worker, args=(i, part, rooms, opts, run, inbox, go, start), daemon=True)
             for i, part in enumerate(parts)]
    for proc in procs:
        proc.start()
    results: dict[int, dict[str, Any]] = {}
    ready: set[int] = set()
    deadline = time.monotonic() + 600 + opts.duration_limit + opts.drain
    try:
        while len(results) < len(procs):
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not finish in time")
            try:
                kind, index, body = inbox.get(timeout=1.0)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a worker process failed") from None
                continue
            if kind == "ready":
                ready.add(index)
                if len(ready) == len(procs):
                    start.value = time.time() + START_DELAY
                    go.set()
            elif kind == "progress":
                progress.update(index, body)
            elif kind == "result":
                results[index] = body
            elif kind == "error":
                raise RuntimeError(f"worker {index} failed: {body}")
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    return [results[i] for i in sorted(results)]


def _worker(index: int, events: list[TraceEvent], rooms: dict[str, str], opts: Options, run: str,
            inbox: Any, go: Any, start: Any) -> None:
    async def ready() -> float:
        inbox.put(("ready", index, None))
        await asyncio.to_thread(go.wait)
        return float(start.value)

    async def main() -> dict[str, Any]:
        return await run_shard(events, rooms, opts, run, ready,
                               lambda s: inbox.put(("progress", index, s)))
    try:
        result = _run_loop(main)
    except Exception as exc:  # reported to the parent, which fails the run
        inbox.put(("error", index, repr(exc)))
        return
    inbox.put(("result", index, result))


def _run_loop(main: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())

"""`roomserver-loadtest {generate,replay,report}` (or `python -m roomserver.loadtests`); see docs/loadtests.md.

Exit codes of `replay`: 0 every durable message arrived once and in order; 1 some were lost or
out of order; 2 bad arguments or a setup failure (URL, sign-in, room creation)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from roomserver.client import TargetError, targets
from roomserver.loadtests import report
from roomserver.loadtests.replay import Options, SetupError
from roomserver.loadtests.scenario import Scenario, generate
from roomserver.realtime.trace import TraceError, read_trace, write_trace


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomserver-loadtest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic trace")
    gen.add_argument("out", type=Path, help="trace file to write (.jsonl)")
    gen.add_argument("--rooms", type=int, default=10)
    gen.add_argument("--members", type=int, default=20, help="members per room")
    gen.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    gen.add_argument("--message-rate", type=float, default=0.1, help="chat messages per member per second")
    gen.add_argument("--reaction-rate", type=float, default=0.02, help="reactions per member per second")
    gen.add_argument("--tutor-rate", type=float, default=0.0, help="tutor questions per room per second")
    gen.add_argument("--no-typing", action="store_true", help="no typing bursts before messages")
    gen.add_argument("--churn", type=float, default=0.1, help="fraction of members who leave and rejoin")
    gen.add_argument("--join-spread", type=float, default=2.0, help="seconds over which members join")
    gen.add_argument("--storm", type=float, action="append", default=[],
                     help="time (s) of a reconnect storm; repeatable")
    gen.add_argument("--storm-fraction", type=float, default=0.5)
    gen.add_argument("--max-durable-per-minute", type=int, default=100,
                     help="cap per user; keep below the server's WS_CHAT_PER_MINUTE")
    gen.add_argument("--seed", type=int, default=1)

    rep = sub.add_parser("replay", help="replay a trace against a server")
    rep.add_argument("trace", type=Path)
    rep.add_argument("--url", required=True, help="server base URL (http(s):// or ws(s)://)")
    rep.add_argument("--speed", type=float, default=1.0, help="time compression: 2 plays twice as fast")
    rep.add_argument("--clients", type=int, default=None, help="replay only the first N virtual users")
    rep.add_argument("--duration-limit", type=float, default=300.0, help="stop playing after this many seconds")
    rep.add_argument("--max-events", type=int, default=1_000_000, help="replay at most this many events")
    rep.add_argument("--workers", type=int, default=1, help="worker processes sharing the rooms")
    rep.add_argument("--drain", type=float, default=10.0, help="seconds to wait for deliveries after the play")
    rep.add_argument("--setup-concurrency", type=int, default=32, help="concurrent REST calls per worker")
    rep.add_argument("--identity-seed", default=None, help="derive the same wallets on every run")
    rep.add_argument("--deflate", action="store_true", help="offer per-message compression")
    rep.add_argument("--out", type=Path, default=None, help="report directory (default loadtest-<time>)")
    rep.add_argument("--quiet", action="store_true", help="no live progress line")

    rpt = sub.add_parser("report", help="print a result's summary and redraw its plot")
    rpt.add_argument("result", type=Path, help="result.json of a replay")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    if args.command == "replay":
        return _replay(args)
    result = report.load(args.result)
    print(report.summary(result))
    if not report.plot(result, args.result.with_name(report.PLOT)):
        print(report.PLOT_SKIPPED)
    return 0 if result["ok"] else 1


def _generate(args: argparse.Namespace) -> int:
    scenario = Scenario(rooms=args.rooms, members=args.members, duration=args.duration,
                        message_rate=args.message_rate, reaction_rate=args.reaction_rate,
                        tutor_rate=args.tutor_rate, typing=not args.no_typing, churn=args.churn,
                        join_spread=args.join_spread, storms=tuple(args.storm),
                        storm_fraction=args.storm_fraction,
                        max_durable_per_minute=args.max_durable_per_minute, seed=args.seed)
    count = write_trace(args.out, scenario.header(), generate(scenario))
    print(f"wrote {count} events to {args.out}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from roomserver.loadtests.runner import replay

    if args.speed <= 0 or args.workers < 1 or args.duration_limit <= 0 or args.max_events < 1:
        print("error: --speed, --workers, --duration-limit and --max-events must be positive", file=sys.stderr)
        return 2
    try:
        targets(args.url)
        _, events = read_trace(args.trace, max_events=args.max_events)
    except (TargetError, TraceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra = {"identity_seed": args.identity_seed} if args.identity_seed else {}
    opts = Options(url=args.url, speed=args.speed, clients=args.clients, duration_limit=args.duration_limit,
                   max_events=args.max_events, workers=args.workers, drain=args.drain,
                   setup_concurrency=args.setup_concurrency, deflate=args.deflate,
                   progress=not args.quiet, **extra)
    try:
        result = asyncio.run(replay(events, opts))
    except SetupError as exc:
        print(f"error: setup failed: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = report.write(result, out)
    print(report.summary(result))
    if "plot" not in paths:
        print(report.PLOT_SKIPPED)
    print("report: " + ", ".join(str(path) for path in paths.values()))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""`python -m roomserver.ledger [--host H] [--port P] [--data-dir D] [--dev]`."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from roomserver.ledger.server import is_loopback, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomserver ledger", description="local Solana JSON-RPC ledger over LiteSVM")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the replay log lives; none: memory only")
    parser.add_argument("--dev", action="store_true", help="enable ledger_setAccount (tests only; loopback hosts only)")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process dies (how `serve` runs its ledger)")
    args = parser.parse_args(argv)
    if args.dev and not is_loopback(args.host):
        parser.error(f"--dev is refused off loopback (raw account writes); bind 127.0.0.1, not {args.host}")
    if args.parent_pid is not None:
        _die_with(args.parent_pid)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    serve(args.host, args.port, args.data_dir, dev=args.dev)
    return 0


PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> None:
    """SIGTERM when the parent dies, even by SIGKILL (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


if __name__ == "__main__":
    sys.exit(main())

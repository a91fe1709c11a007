"""`python -m roomserver.ledger [--host H] [--port P] [--data-dir D] [--dev]`."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from roomserver.ledger.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomserver ledger", description="local Solana JSON-RPC ledger over LiteSVM")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the replay log lives; none: memory only")
    parser.add_argument("--dev", action="store_true", help="enable ledger_setAccount (tests only)")
    args = parser.parse_args(argv)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    serve(args.host, args.port, args.data_dir, dev=args.dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())

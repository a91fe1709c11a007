"""`roomserver {serve,migrate,ledger,solana}` (or `python -m roomserver`): the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roomserver.config import Settings, SettingsError, describe, help_lines, markdown_table
from roomserver.observe.logs import log_config
from roomserver.observe.redact import redact_text, redact_url

log = logging.getLogger("roomserver")

FAST_WS = "roomserver.api.ws:FrameCachingProtocol"
"""uvicorn's websockets-sansio protocol, framing each fan-out message once (roomserver/api/ws.py)."""


def _settings_help() -> str:
    return ("settings (environment variables, also read from ./.env; bad values are refused "
            "before anything starts):\n" + "\n".join(help_lines()))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="roomserver",
        description="roomserver: realtime collaborative study rooms.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the HTTP/WebSocket server (uvicorn)")
    serve.add_argument("--host", default=None, help="bind address (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT or 8000)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (needs REDIS_URL and DATABASE_URL when > 1)")
    sub.add_parser("migrate", help="apply schema migrations to DATABASE_URL (or the embedded database)")
    check = sub.add_parser("settings", help="validate the settings and print them (secrets hidden)")
    check.add_argument("--markdown", action="store_true",
                       help="print the README's settings table instead (generated from roomserver/config.py)")
    sub.add_parser("ledger", help="run the local Solana ledger (JSON-RPC over LiteSVM); --help for options",
                   add_help=False)
    sub.add_parser("solana", help="dev tooling against a ledger: airdrop, mints, NFT collections; --help",
                   add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("ledger", "solana"):
        return _tool(argv[0], argv[1:])
    args = parser().parse_args(argv)
    overrides = {k: v for k, v in (("host", getattr(args, "host", None)),
                                   ("port", getattr(args, "port", None))) if v is not None}
    if args.command == "settings" and args.markdown:
        print(markdown_table(), end="")
        return 0
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        for var, problem in exc.problems:
            print(f"roomserver: bad setting {var}: {problem}", file=sys.stderr)
        return 2
    logging_config = log_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(logging_config)
    if args.command == "serve":
        return serve(settings, workers=args.workers, logging_config=logging_config)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "settings":
        print("\n".join(redact_text(line) for line in describe(settings)))  # URLs: scheme://host:port
        return 0
    return 2


def serve(settings: Settings, *, workers: int = 1, logging_config: dict[str, Any] | None = None) -> int:
    """Run uvicorn with the server's log format for its own lines too (`logging_config`).
    With `workers` > 1: the embedded parts start once here, and the workers' metrics are
    aggregated through PROMETHEUS_MULTIPROC_DIR (default DATA_DIR/prometheus, emptied now)."""
    import uvicorn

    from roomserver.app import create_app

    options = _uvicorn_options(settings, logging_config or log_config(settings.log_level, settings.log_format))
    log.info("roomserver listening on http://%s:%s", settings.host, settings.port)
    if workers > 1:
        if not settings.redis_url:
            print("roomserver: --workers > 1 needs REDIS_URL: workers fan out to each other "
                  "through Redis", file=sys.stderr)
            return 2
        with contextlib.ExitStack() as shared:
            env = _shared_parts(settings, shared)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir(settings))
            os.environ.update({"HOST": settings.host, "PORT": str(settings.port), **env})
            uvicorn.run("roomserver.app:app_from_env", factory=True, workers=workers, **options)
        return 0
    uvicorn.run(create_app(settings), **options)
    return 0


def _uvicorn_options(settings: Settings, logging_config: dict[str, Any]) -> dict[str, Any]:
    """What every `serve` process hands uvicorn: the frame-caching protocol without deflate,
    the frame cap, the keepalive pings, and the server's log format (`logging_config`)."""
    from roomserver.protocol import MAX_FRAME_BYTES

    return {"host": settings.host, "port": settings.port, "ws": FAST_WS,
            "ws_per_message_deflate": False, "ws_max_size": MAX_FRAME_BYTES,
            "ws_ping_interval": settings.ws_ping_interval_seconds,
            "ws_ping_timeout": settings.ws_ping_timeout_seconds,
            "log_level": settings.log_level, "log_config": logging_config, "proxy_headers": False}


def _metrics_dir(settings: Settings) -> Path:
    """The workers' shared metrics directory, emptied for this run (prometheus-client's
    multiprocess mode): PROMETHEUS_MULTIPROC_DIR if set, else DATA_DIR/prometheus."""
    from roomserver.observe.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    chosen = os.environ.get(MULTIPROC_ENV)
    directory = Path(chosen) if chosen else settings.data_dir.resolve() / "prometheus"
    log.info("metrics   workers aggregated through %s", directory)
    return prepare_multiprocess_dir(directory)


def _shared_parts(settings: Settings, stack: contextlib.ExitStack) -> dict[str, str]:
    """Start the embedded database and local ledger once for all workers; their URLs."""
    from roomserver.ledger.process import start_ledger
    from roomserver.store.pgembed import EmbeddedPostgres

    env: dict[str, str] = {}
    if not settings.database_url:
        pg = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
        env["DATABASE_URL"] = pg.start()
        stack.callback(pg.stop)
        log.info("database  embedded PostgreSQL + pgvector at %s", redact_url(env["DATABASE_URL"]))
    if not settings.solana_rpc_url:
        ledger = start_ledger(settings.data_dir.resolve() / "ledger")
        stack.callback(ledger.stop)
        env["SOLANA_RPC_URL"] = ledger.url
        log.info("solana    local ledger at %s", redact_url(ledger.url))
    return env


def _tool(name: str, argv: list[str]) -> int:
    if name == "ledger":
        from roomserver.ledger.__main__ import main as ledger_main

        return int(ledger_main(argv) or 0)
    from roomserver.chain.dev import main as solana_main

    return int(solana_main(argv) or 0)


async def _migrate(settings: Settings) -> int:
    from roomserver.store.migrations import MigrationError, load, migrate
    from roomserver.store.pgembed import EmbeddedPostgres

    try:
        load()
    except MigrationError as exc:
        print(f"roomserver: cannot migrate: {exc}", file=sys.stderr)
        return 1
    if settings.database_url:
        applied = await migrate(settings.database_url)
    else:
        with EmbeddedPostgres(settings.data_dir / "postgres") as pg:
            applied = await migrate(pg.url())
    print(f"applied {len(applied)} migration(s): {applied}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

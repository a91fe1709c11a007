"""roomserver under the shared fan-out harness (../shared/bench): the server side of
`roomserver/loadtests/bench_adapter.py`.

    python -m roomserver.loadtests.bench_server prepare --rooms 40 --per-room 50
    python -m roomserver.loadtests.bench_server serve --host 127.0.0.1 --port 8765 [--workers 2]

`prepare` starts an embedded PostgreSQL in BENCH_RS_DIR (default /tmp/rsbench) and roomserver
on a private port, signs in `rooms * per_room` wallets for real (SIWS challenge + verify over
REST, `roomserver.identity.wallet.Wallet`), creates the rooms (`room0..`, as the harness names them),
joins user (r, k) to room r over REST, and writes `mapping.json` (room name -> room id and
its members' tokens). It only adds what an earlier mapping lacks.

`serve` starts that PostgreSQL again (a child of this process: the harness measures the
whole process tree, so the database's CPU counts as server CPU) and runs
`python -m roomserver serve` with REDIS_URL = $BENCH_REDIS_URL (Redis fan-out + presence),
Postgres persistence of every chat message, and the bench's raised rate limits. SIGTERM
stops both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("BENCH_RS_DIR", "/tmp/rsbench"))
MAPPING = BENCH_DIR / "mapping.json"

BENCH_ENV = {
    "EMBEDDINGS_PRELOAD": "false",
    "RATE_LIMIT_PER_MINUTE": "100000000",
    "WS_CHAT_PER_MINUTE": "100000000",
    "WS_TYPING_PER_MINUTE": "100000000",
    "WS_SOCKETS_PER_IP": "100000000",
    "LOG_LEVEL": "warning",
}


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **BENCH_ENV, "DATA_DIR": str(BENCH_DIR / "data"), **extra}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _subreaper() -> None:
    """Orphaned descendants (pg_ctl's postmaster) stay in our tree, so the harness counts them."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _postgres() -> Any:
    sys.path.insert(0, str(ROOT))
    from roomserver.store.pgembed import EmbeddedPostgres

    return EmbeddedPostgres(BENCH_DIR / "postgres")


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"roomserver exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code in (200, 503):
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become healthy")


def _serve_cmd(host: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "roomserver", "serve", "--host", host, "--port", str(port),
            "--workers", str(workers)]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- prepare ----


def load_mapping() -> dict[str, Any]:
    if MAPPING.exists():
        return json.loads(MAPPING.read_text())
    return {"rooms": {}, "created": time.time()}


async def _populate(base: str, rooms: int, per_room: int, mapping: dict[str, Any]) -> None:
    import hashlib

    import httpx

    from roomserver.identity.wallet import Wallet

    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def call(method: str, path: str, token: str | None = None, body: Any = None) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else None
            async with gate:
                answer = await http.request(method, path, json=body, headers=headers)
            if answer.status_code >= 300:
                raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
            return answer.json()

        async def sign_in(label: str) -> str:
            wallet = Wallet.from_seed(hashlib.sha256(f"rsbench:{label}".encode()).digest())
            challenge = await call("POST", "/api/v1/auth/siws/challenge", body={"address": wallet.address})
            verified = await call("POST", "/api/v1/auth/wallet/verify", body=wallet.verify_payload(challenge))
            return str(verified["token"])

        owner = mapping.get("owner") or await sign_in("owner")
        mapping["owner"] = owner

        async def member(room_id: str, label: str) -> str:
            token = await sign_in(label)
            await call("POST", f"/api/v1/rooms/{room_id}/join", token=token)
            return token

        for r in range(rooms):
            name = f"room{r}"
            entry = mapping["rooms"].get(name)
            if entry is None:
                room = await call("POST", "/api/v1/rooms", token=owner, body={
                    "name": f"bench {name}", "room_type": "public", "max_participants": 10000})
                entry = mapping["rooms"][name] = {"id": room["id"], "tokens": []}
            have = len(entry["tokens"])
            if have < per_room:
                entry["tokens"] += await asyncio.gather(
                    *(member(entry["id"], f"{name}:{k}") for k in range(have, per_room)))
                print(f"  {name}: {len(entry['tokens'])} members", flush=True)


def prepare(rooms: int, per_room: int) -> None:
    mapping = load_mapping()
    if time.time() - mapping.get("created", 0) > 12 * 3600:  # sessions live 24 h
        mapping = {"rooms": {}, "created": time.time()}
    need = [f"room{r}" for r in range(rooms)]
    if all(len(mapping["rooms"].get(n, {}).get("tokens", ())) >= per_room for n in need):
        print(f"mapping {MAPPING} already has {rooms} rooms x {per_room} members")
        return
    sys.path.insert(0, str(ROOT))
    from roomserver.store.ports import free_port

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    pg = _postgres()
    url = pg.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(BENCH_DIR / "prepare.log", "ab")
    proc = subprocess.Popen(_serve_cmd("127.0.0.1", port, 1), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=_env({"DATABASE_URL": url, "REDIS_URL": "", "PUBLIC_ORIGIN": base}))
    try:
        _wait_healthy(base, proc)
        t0 = time.monotonic()
        asyncio.run(_populate(base, rooms, per_room, mapping))
        MAPPING.write_text(json.dumps(mapping))
        print(f"prepared {rooms} rooms x {per_room} signed-in members in {time.monotonic() - t0:.1f}s "
              f"-> {MAPPING}")
    finally:
        _stop(proc)
        pg.stop()
        log.close()


# ---- serve ----


def serve(host: str, port: int, workers: int) -> int:
    if os.environ.get("BENCH_RS_PG_OUTSIDE") != "1":
        _subreaper()  # else the daemonised postmaster leaves our tree (idle-memory runs, see the adapter)
    if not MAPPING.exists():
        raise SystemExit(f"run `python -m roomserver.loadtests.bench_server prepare` first ({MAPPING} missing)")
    pg = _postgres()
    url = pg.start()
    origin = f"http://{host}:{port}"
    env = _env({"DATABASE_URL": url, "REDIS_URL": os.environ.get("BENCH_REDIS_URL", ""),
                "PUBLIC_ORIGIN": origin, "ALLOWED_ORIGINS": origin})
    proc = subprocess.Popen(_serve_cmd(host, port, workers), cwd=ROOT, env=env)
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        while not stopping and proc.poll() is None:
            time.sleep(0.2)
    finally:
        _stop(proc)
        pg.stop()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m roomserver.loadtests.bench_server")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare")
    pr.add_argument("--rooms", type=int, default=40)
    pr.add_argument("--per-room", type=int, default=50)
    sv = sub.add_parser("serve")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)
    sv.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    if args.command == "prepare":
        prepare(args.rooms, args.per_room)
        return 0
    return serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    sys.exit(main())

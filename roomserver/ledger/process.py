"""Run the local ledger as a child process (what `serve` does when no SOLANA_RPC_URL is set).

    with start_ledger(data_dir=Path("data/ledger")) as ledger:
        client = AsyncClient(ledger.url)

`start_ledger` returns once getHealth answers "ok", or raises LedgerStartError (with the
child's output) if it exits or does not answer within `timeout` seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from roomserver.store.ports import free_port


class LedgerStartError(RuntimeError):
    pass


def rpc_health(url: str, timeout: float = 1.0) -> bool:
    """True when the ledger at `url` answers getHealth with "ok"."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getHealth"}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bool(json.load(response).get("result") == "ok")
    except (OSError, ValueError, urllib.error.URLError):
        return False


@dataclass
class LedgerProcess:
    url: str
    process: subprocess.Popen[bytes]
    output: Path

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the log is flushed and closed), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> LedgerProcess:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def start_ledger(
    data_dir: Path | None = None, *, host: str = "127.0.0.1", port: int | None = None,
    dev: bool = False, timeout: float = 30.0,
) -> LedgerProcess:
    port = port or free_port(host)
    args = [sys.executable, "-m", "roomserver.ledger", "--host", host, "--port", str(port),
            "--parent-pid", str(os.getpid())]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    if dev:
        args.append("--dev")
    fd, name = tempfile.mkstemp(prefix="ledger-", suffix=".log")
    output = Path(name)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with os.fdopen(fd, "wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env)
    ledger = LedgerProcess(f"http://{host}:{port}", process, output)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LedgerStartError(f"ledger exited with {process.returncode}: {output.read_text()[-2000:]}")
        if rpc_health(ledger.url):
            return ledger
        time.sleep(0.05)
    ledger.stop()
    raise LedgerStartError(f"ledger did not answer within {timeout}s: {output.read_text()[-2000:]}")

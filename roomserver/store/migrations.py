"""Ordered, forward-only SQL migrations, recorded in `schema_migrations`.

The migrations are package data: `roomserver/store/schema/NNNN_name.sql`, read through
`importlib.resources`, so a wheel carries them. Finding none is an error (`NoMigrations`),
never "schema is up to date". Safe to run twice and from several processes at once: the
whole run holds an advisory lock.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

log = logging.getLogger(__name__)

SCHEMA_DIR: Traversable = files("roomserver.store") / "schema"
LOCK_KEY = 0x726F6F6D  # "room"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(ValueError):
    """The migrations themselves are unusable (missing, misnamed, clashing)."""


class NoMigrations(MigrationError):
    """No migration file was found: the package was installed without its data."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load(schema_dir: Traversable | None = None) -> list[Migration]:
    """Every `*.sql` file of `schema_dir` (default `SCHEMA_DIR`), ordered by version;
    raises `MigrationError`."""
    schema_dir = SCHEMA_DIR if schema_dir is None else schema_dir
    paths = sorted(schema_dir.iterdir(), key=lambda p: p.name) if schema_dir.is_dir() else []
    found = []
    for path in paths:
        if not path.name.endswith(".sql"):
            continue
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    if not found:
        raise NoMigrations(f"no migration files (NNNN_name.sql) in {schema_dir}")
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migrations share a version number")
    return found


async def migrate(dsn: str, schema_dir: Traversable | None = None) -> list[int]:
    """Apply what is missing; returns the versions applied by this call.

    Raises `MigrationError` (before connecting) when the migrations are missing or unusable."""
    migrations = load(schema_dir)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _apply(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[int]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    applied = {r["version"]: r["checksum"] for r in rows}
    done = []
    for m in migrations:
        if m.version in applied:
            if applied[m.version] != m.checksum:
                log.warning("migration %04d_%s changed after it was applied", m.version, m.name)
            continue
        async with conn.transaction():
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version, m.name, m.checksum,
            )
        log.info("applied migration %04d_%s", m.version, m.name)
        done.append(m.version)
    return done

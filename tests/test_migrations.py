"""Migrations apply on an empty embedded PostgreSQL with pgvector, twice, and from two processes
that provably overlap (both wait on the migration lock at once)."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from roomserver.store.migrations import LOCK_KEY, load, migrate
from roomserver.store.pgembed import EmbeddedPostgres


async def _fresh(pg: EmbeddedPostgres, name: str) -> str:
    pg.psql(f'DROP DATABASE IF EXISTS "{name}"')
    pg.psql(f'CREATE DATABASE "{name}"')
    return pg.url(name)


async def test_apply_twice_is_a_no_op(pg: EmbeddedPostgres) -> None:
    url = await _fresh(pg, "mig_twice")
    first = await migrate(url)
    assert first == [m.version for m in load()]
    assert await migrate(url) == []
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(first)
        dims = await conn.fetchval(
            """SELECT atttypmod FROM pg_attribute
               WHERE attrelid = 'document_chunks'::regclass AND attname = 'embedding'""")
        assert dims == 384
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'document_chunks_embedding'")
        assert "hnsw" in index and "vector_cosine_ops" in index
    finally:
        await conn.close()


async def _lock_waiters(conn: asyncpg.Connection) -> int:
    """Sessions of this database blocked on the migration lock (a bigint key: classid:objid)."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM pg_locks
           WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND ((classid::bigint << 32) | objid::bigint) = $1""", LOCK_KEY))


async def test_two_processes_at_once(pg: EmbeddedPostgres) -> None:
    """The test holds the migration lock while both processes start, so both must wait on it
    at the same time; after the release exactly one applies and the other finds it done."""
    url = await _fresh(pg, "mig_concurrent")
    env = {**os.environ, "DATABASE_URL": url}
    holder = await asyncpg.connect(url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-m", "roomserver", "migrate", env=env,
                                                 stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
            for _ in range(2)
        ]
        async with asyncio.timeout(60):
            while await _lock_waiters(holder) < 2:
                assert all(p.returncode is None for p in procs), "a migrate exited without waiting"
                await asyncio.sleep(0.05)
        assert await holder.fetchval("SELECT to_regclass('schema_migrations')") is None
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        outputs = [(await p.communicate())[0].decode() for p in procs]
    finally:
        await holder.close()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("applied" in out for out in outputs) == 1, outputs
    assert sum("up to date" in out for out in outputs) == 1, outputs
    conn = await asyncpg.connect(url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [m.version for m in load()]
    finally:
        await conn.close()

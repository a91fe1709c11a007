"""Migrations apply on an empty embedded PostgreSQL with pgvector, twice, and from two processes at once."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from roomserver.store.migrations import load, migrate
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


async def test_two_processes_at_once(pg: EmbeddedPostgres) -> None:
    url = await _fresh(pg, "mig_concurrent")
    env = {**os.environ, "DATABASE_URL": url}
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "roomserver", "migrate", env=env,
                                             stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [(await p.communicate())[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("applied" in out for out in outputs) == 1, outputs
    assert sum("up to date" in out for out in outputs) == 1, outputs
    conn = await asyncpg.connect(url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [m.version for m in load()]
    finally:
        await conn.close()

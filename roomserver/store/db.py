"""The asyncpg pool. Queries live with the service that owns them, one function per query."""

from __future__ import annotations

import asyncpg
import orjson
from pgvector.asyncpg import register_vector

Pool = asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector(conn)
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    """A pool whose connections speak pgvector and decode json/jsonb to Python objects."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    assert pool is not None
    return pool

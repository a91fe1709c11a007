"""Hybrid library search: pgvector cosine top-N and Postgres full-text top-N, fused by
reciprocal rank fusion, with permissions applied inside the SQL.

A chunk is a candidate only when its document is `ready`, not deleted, and inside the
`Scope`; both rankings run over those candidates only, so a chunk of a document the caller
may not read never influences ranks, scores or counts.

Scope semantics (the conditions that are given combine with AND):
- `user_id`: documents the user may read: their own, public ones (when `include_public`),
  those shared to the user, and those shared to a room where the user is a current member
  (not banned, not left); expired permissions count for nothing.
- `room_id`: documents shared to that room (unexpired), plus public ones when `include_public`.
A Scope with neither matches public documents only (or nothing without `include_public`).

`Hit.score` is the chunk's cosine similarity to the query (about 0.1 = unrelated,
0.5+ = clearly on topic for all-MiniLM-L6-v2); hits are ordered by fused rank, not by score.
Only vectors made by the running model (`embedder.model_id`, stored with each chunk) are
compared; a chunk embedded by another model, or stored without a vector, competes by full
text alone and scores 0.

Lexical-only mode (no embedder: the `[embeddings]` extra is not installed): full-text ranking
alone, and `Hit.score` is `ts_rank_cd` normalised to [0, 1) (rank / (rank + 1)), not a
similarity.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from roomserver.library.embeddings import Embedder

RRF_K = 60  # the usual reciprocal rank fusion constant
MAX_LIMIT = 100


@dataclass(frozen=True)
class Scope:
    """Whose permissions filter the search; applied INSIDE the SQL, never afterwards."""

    user_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None
    include_public: bool = True


@dataclass(frozen=True)
class Hit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    title: str
    text: str
    page_start: int
    page_end: int
    score: float


class Params:
    """Positional SQL parameters: `add(value)` returns its placeholder."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


LIVE_PERMISSION = "(p.expires_at IS NULL OR p.expires_at > now())"


def user_may_read(user: str, alias: str = "d", *, include_public: bool = True) -> str:
    """SQL: the user (placeholder `user`) may read document `alias`, whatever its status."""
    public = f" OR {alias}.is_public" if include_public else ""
    return f"""({alias}.owner_id = {user}{public} OR EXISTS (
        SELECT 1 FROM document_permissions p
        WHERE p.document_id = {alias}.id AND {LIVE_PERMISSION} AND (
            p.user_id = {user} OR p.room_id IN (
                SELECT rp.room_id FROM room_participants rp
                WHERE rp.user_id = {user} AND rp.is_member AND NOT rp.is_banned))))"""


def scope_condition(scope: Scope, params: Params, alias: str = "d") -> str:
    """SQL condition over documents `alias` for `scope` (status and deletion not included)."""
    parts: list[str] = []
    if scope.user_id is not None:
        parts.append(user_may_read(params.add(scope.user_id), alias, include_public=scope.include_public))
    if scope.room_id is not None:
        room = params.add(scope.room_id)
        shared = (f"EXISTS (SELECT 1 FROM document_permissions p WHERE p.document_id = {alias}.id "
                  f"AND p.room_id = {room} AND {LIVE_PERMISSION})")
        parts.append(f"({shared} OR {alias}.is_public)" if scope.include_public else shared)
    if not parts:
        parts.append(f"{alias}.is_public" if scope.include_public else "false")
    return " AND ".join(parts)


def document_filter(scope: Scope, params: Params, *, tags: Sequence[str] | None,
                    document_ids: Sequence[uuid.UUID] | None, alias: str = "d") -> str:
    """Searchable documents: ready, not deleted, in scope, with every tag, among the ids."""
    conditions = [f"{alias}.status = 'ready'", f"{alias}.deleted_at IS NULL",
                  scope_condition(scope, params, alias)]
    if tags:
        conditions.append(f"{alias}.tags @> {params.add(list(tags))}::text[]")
    if document_ids is not None:
        conditions.append(f"{alias}.id = ANY({params.add(list(document_ids))}::uuid[])")
    return " AND ".join(conditions)


async def search(
    pool: asyncpg.Pool,
    embedder: Embedder | None,
    query: str,
    scope: Scope,
    *,
    limit: int = 10,
    tags: Sequence[str] | None = None,
    document_ids: Sequence[uuid.UUID] | None = None,
    offset: int = 0,
) -> list[Hit]:
    """The best `limit` chunks for `query` within `scope` (after skipping `offset`)."""
    query = query.strip()
    if not query or limit < 1:
        return []
    limit = min(limit, MAX_LIMIT)
    if embedder is None:
        sql, params = lexical_sql(query, scope, limit=limit, offset=offset, tags=tags,
                                  document_ids=document_ids)
        rows = await pool.fetch(sql, *params.values)
        return _hits(rows)
    vector = (await embedder.embed([query]))[0]
    sql, params = search_sql(query, vector, embedder.model_id, scope, limit=limit, offset=offset,
                             tags=tags, document_ids=document_ids)
    async with pool.acquire() as conn, conn.transaction():
        # the filter runs after the HNSW scan: let it keep scanning until enough rows pass
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        await conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, 2 * candidates(limit, offset))}")
        rows = await conn.fetch(sql, *params.values)
    return _hits(rows)


def _hits(rows: Sequence[asyncpg.Record]) -> list[Hit]:
    return [Hit(row["id"], row["document_id"], row["title"], row["text"], row["page_start"],
                row["page_end"], float(row["similarity"])) for row in rows]


def candidates(limit: int, offset: int) -> int:
    """How many chunks each ranking contributes to the fusion."""
    return max(50, 3 * (limit + offset))


# A question rarely has every word in one passage: full text uses the OR of its lexemes, and
# ts_rank_cd then prefers chunks matching more of them, closer together.
def words_cte(query: str) -> str:
    """SQL: the CTE `words(q)`, the OR-query of placeholder `query`'s lexemes (NULL: none)."""
    return f"""words AS (
        SELECT nullif(replace(plainto_tsquery('english', {query})::text, ' & ', ' | '), '')::tsquery AS q
    )"""


def lexical_sql(query: str, scope: Scope, *, limit: int, offset: int,
                tags: Sequence[str] | None, document_ids: Sequence[uuid.UUID] | None) -> tuple[str, Params]:
    """Full-text ranking alone (lexical-only mode); `similarity` is ts_rank_cd normalised."""
    params = Params(query)
    allowed = document_filter(scope, params, tags=tags, document_ids=document_ids)
    lim, off = params.add(limit), params.add(offset)
    sql = f"""
    WITH allowed AS MATERIALIZED (
        SELECT d.id, d.title FROM documents d WHERE {allowed}
    ), {words_cte("$1")}
    SELECT c.id, c.document_id, a.title, c.text, c.page_start, c.page_end,
           ts_rank_cd(c.tsv, words.q, 32) AS similarity
    FROM document_chunks c
    JOIN allowed a ON a.id = c.document_id, words
    WHERE words.q IS NOT NULL AND c.tsv @@ words.q
    ORDER BY similarity DESC, c.id
    LIMIT {lim} OFFSET {off}"""
    return sql, params


def search_sql(query: str, vector: Any, model_id: str, scope: Scope, *, limit: int, offset: int,
               tags: Sequence[str] | None, document_ids: Sequence[uuid.UUID] | None) -> tuple[str, Params]:
    params = Params(vector, query)
    model = params.add(model_id)
    allowed = document_filter(scope, params, tags=tags, document_ids=document_ids)
    n = params.add(candidates(limit, offset))
    lim, off = params.add(limit), params.add(offset)
    sql = f"""
    WITH allowed AS MATERIALIZED (
        SELECT d.id, d.title FROM documents d WHERE {allowed}
    ), vec AS MATERIALIZED (
        SELECT c.id, c.embedding <=> $1 AS distance
        FROM document_chunks c
        WHERE c.document_id IN (SELECT id FROM allowed) AND c.embedding IS NOT NULL
          AND c.embedding_model = {model}
        ORDER BY c.embedding <=> $1 LIMIT {n}
    ), vec_ranked AS (
        SELECT id, row_number() OVER (ORDER BY distance, id) AS rank FROM vec
    ), {words_cte("$2")}, fts AS MATERIALIZED (
        SELECT c.id, ts_rank_cd(c.tsv, words.q) AS relevance
        FROM document_chunks c, words
        WHERE words.q IS NOT NULL AND c.tsv @@ words.q
          AND c.document_id IN (SELECT id FROM allowed)
        ORDER BY relevance DESC LIMIT {n}
    ), fts_ranked AS (
        SELECT id, row_number() OVER (ORDER BY relevance DESC, id) AS rank FROM fts
    ), fused AS (
        SELECT id, sum(1.0 / ({RRF_K} + rank)) AS rrf
        FROM (SELECT * FROM vec_ranked UNION ALL SELECT * FROM fts_ranked) ranks
        GROUP BY id
    )
    SELECT c.id, c.document_id, a.title, c.text, c.page_start, c.page_end,
           CASE WHEN c.embedding_model = {model} THEN 1 - (c.embedding <=> $1) ELSE 0 END
               AS similarity, f.rrf
    FROM fused f
    JOIN document_chunks c ON c.id = f.id
    JOIN allowed a ON a.id = c.document_id
    ORDER BY f.rrf DESC, similarity DESC, c.id
    LIMIT {lim} OFFSET {off}"""
    return sql, params


async def vector_census(pool: asyncpg.Pool, model_id: str | None) -> dict[str, int]:
    """Chunks whose vectors vector search cannot use under `model_id` (None: lexical mode):
    `other_model` (embedded by a different model) and `without_vector` (ingested lexically)."""
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE embedding_model IS DISTINCT FROM $1
                                     AND embedding IS NOT NULL) AS other_model,
                  count(*) FILTER (WHERE embedding IS NULL) AS without_vector
           FROM document_chunks""", model_id)
    return {"other_model": row["other_model"], "without_vector": row["without_vector"]}

"""Session tokens: opaque, random, stored only as a SHA-256 hash, revocable server-side."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

TOKEN_PREFIX = "rs1_"


@dataclass(frozen=True)
class Session:
    id: uuid.UUID
    user_id: uuid.UUID
    wallet_address: str
    expires_at: datetime


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, ttl: timedelta):
        self._pool = pool
        self._ttl = ttl

    async def issue(self, conn: asyncpg.Connection, user_id: uuid.UUID, *, ip: str | None = None,
                    user_agent: str | None = None) -> tuple[str, datetime]:
        """A new token for `user_id`, inside the caller's transaction."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + self._ttl
        await conn.execute(
            """INSERT INTO sessions (user_id, token_hash, expires_at, ip, user_agent)
               VALUES ($1, $2, $3, $4, $5)""",
            user_id, _hash(token), expires_at, ip, (user_agent or "")[:300],
        )
        return token, expires_at

    async def resolve(self, token: str) -> Session | None:
        """The live session for `token`, or None if unknown, expired or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = await self._pool.fetchrow(
            """UPDATE sessions s SET last_used_at = now()
               FROM users u
               WHERE s.token_hash = $1 AND u.id = s.user_id
                 AND s.revoked_at IS NULL AND s.expires_at > now()
               RETURNING s.id, s.user_id, u.wallet_address, s.expires_at""",
            _hash(token),
        )
        return Session(**dict(row)) if row else None

    async def is_live(self, session_id: uuid.UUID) -> bool:
        return bool(await self._pool.fetchval(
            "SELECT true FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()",
            session_id,
        ))

    async def revoke(self, session_id: uuid.UUID) -> None:
        await self._pool.execute(
            "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", session_id
        )

    async def revoke_user(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        """Revoke every live session of `user_id`; returns the ids revoked now."""
        rows = await self._pool.fetch(
            """UPDATE sessions SET revoked_at = now()
               WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING id""",
            user_id)
        return [row["id"] for row in rows]

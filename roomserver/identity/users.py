"""Users: one per wallet address, created on first sign-in."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from roomserver import errors

_COLUMNS = "id, wallet_address, username, display_name, avatar_url, bio, reputation, xp, level, created_at, last_seen_at"


class User(BaseModel):
    id: uuid.UUID
    wallet_address: str
    username: str | None = None
    display_name: str | None = None
    avatar_url: str | None = None
    bio: str | None = None
    reputation: int = 0
    xp: int = 0
    level: int = 1
    created_at: datetime
    last_seen_at: datetime | None = None


async def upsert_by_wallet(conn: asyncpg.Connection, wallet_address: str) -> tuple[User, bool]:
    """The user for `wallet_address`, created if new; returns (user, created)."""
    row = await conn.fetchrow(
        f"""INSERT INTO users (wallet_address, last_seen_at) VALUES ($1, now())
            ON CONFLICT (wallet_address) DO UPDATE SET last_seen_at = now()
            RETURNING {_COLUMNS}, (xmax = 0) AS created""",
        wallet_address,
    )
    data = dict(row)
    created = data.pop("created")
    return User(**data), created


async def get(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> User:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    if row is None:
        raise errors.NotFound("no such user", code="user_not_found")
    return User(**dict(row))


async def update_profile(pool: asyncpg.Pool, user_id: uuid.UUID, changes: dict[str, object]) -> User:
    allowed = {"username", "display_name", "avatar_url", "bio"}
    fields = [k for k in changes if k in allowed]
    if not fields:
        return await get(pool, user_id)
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
    try:
        row = await pool.fetchrow(
            f"UPDATE users SET {sets}, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
            user_id, *(changes[k] for k in fields),
        )
    except asyncpg.UniqueViolationError:
        raise errors.Conflict("that username is taken", code="username_taken") from None
    except asyncpg.CheckViolationError:
        raise errors.BadRequest("username must be 3-32 of A-Z a-z 0-9 _ . -",
                                code="validation_error") from None
    return User(**dict(row))


async def audit(conn: asyncpg.Connection | asyncpg.Pool, actor_id: uuid.UUID | None, action: str,
                target_type: str | None = None, target_id: object = None,
                data: dict[str, object] | None = None, ip: str | None = None) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor_id, action, target_type, target_id, data, ip)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        actor_id, action, target_type, None if target_id is None else str(target_id), data or {}, ip,
    )

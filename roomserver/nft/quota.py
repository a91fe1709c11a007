"""Spending limits of sponsored minting, checked before the fee payer signs anything.

The reservation IS the mint intent: every sponsored intent records `sponsor_lamports`, what
the fee payer may spend on it (the mint account's rent, the owner's token account rent and
the signature fees). `reserve` counts the current UTC day's sponsored intents that were not
abandoned (an abandoned intent's transaction never ran, so it cost nothing) and refuses with
429 `mint_quota_exceeded` when one more would pass a limit:

    user_mints_per_day   mints one user may have sponsored per UTC day
    mints_per_day        mints the deployment sponsors per UTC day
    lamports_per_day     lamports the fee payer may spend per UTC day

`details` name the limit, its value, what is used, and `resets_at` (the next UTC midnight);
`retry_after` (and the HTTP `Retry-After` header) is the wait until then. It runs inside the
transaction that inserts the intent, under a transaction-scoped advisory lock, so concurrent
requests on any number of nodes cannot overshoot. Days are the database clock's.

A room may be minted (sponsored) only once it is `room_min_age_seconds` old: 429
`room_too_new`, retry after the remaining time, so rooms made to be minted cost an attacker time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from roomserver import errors

LOCK_KEY = 0x6E667471  # "nftq"


@dataclass(frozen=True)
class SponsorLimits:
    user_mints_per_day: int = 10
    mints_per_day: int = 500
    lamports_per_day: int = 2_000_000_000
    room_min_age_seconds: int = 3600


_USAGE = """
    WITH day AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start)
    SELECT day.start + interval '1 day' AS resets_at,
           extract(epoch FROM day.start + interval '1 day' - now())::float8 AS retry_after,
           count(i.id) FILTER (WHERE i.user_id = $1) AS user_mints,
           count(i.id) AS mints,
           COALESCE(sum(i.sponsor_lamports), 0)::bigint AS lamports
    FROM day LEFT JOIN nft_mint_intents i
      ON i.mode = 'sponsored' AND i.status <> 'abandoned' AND i.created_at >= day.start
    GROUP BY day.start"""


def _exceeded(limit: str, value: int, used: int, resets_at: datetime, retry_after: float) -> errors.RateLimited:
    return errors.RateLimited(
        f"the sponsored mint quota is used up ({limit} = {value}); it resets at {resets_at.isoformat()}",
        retry_after=retry_after, code="mint_quota_exceeded",
        details={"limit": limit, "limit_value": value, "used": used, "resets_at": resets_at.isoformat()})


async def reserve(conn: asyncpg.Connection, limits: SponsorLimits, user_id: uuid.UUID, lamports: int) -> None:
    """Raise `mint_quota_exceeded` unless one more sponsored mint costing `lamports` fits
    today's limits. Call inside the transaction that inserts the intent (the lock is held
    until it ends)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    usage = await conn.fetchrow(_USAGE, user_id)
    resets_at, wait = usage["resets_at"], usage["retry_after"]
    if usage["user_mints"] + 1 > limits.user_mints_per_day:
        raise _exceeded("user_mints_per_day", limits.user_mints_per_day, usage["user_mints"], resets_at, wait)
    if usage["mints"] + 1 > limits.mints_per_day:
        raise _exceeded("mints_per_day", limits.mints_per_day, usage["mints"], resets_at, wait)
    if usage["lamports"] + lamports > limits.lamports_per_day:
        raise _exceeded("lamports_per_day", limits.lamports_per_day, usage["lamports"], resets_at, wait)


def check_room_age(limits: SponsorLimits, created_at: datetime, now: datetime) -> None:
    """Raise `room_too_new` unless the room is at least `room_min_age_seconds` old."""
    mintable_at = created_at + timedelta(seconds=limits.room_min_age_seconds)
    if now < mintable_at:
        raise errors.RateLimited(
            f"a room can be minted once it is {limits.room_min_age_seconds} s old",
            retry_after=(mintable_at - now).total_seconds(), code="room_too_new",
            details={"mintable_at": mintable_at.isoformat(), "min_age_seconds": limits.room_min_age_seconds})

"""Sign-in leftovers deleted on a schedule, and the cap on outstanding challenges.

Every `POST /api/v1/auth/siws/challenge` (unauthenticated) stores a nonce and every sign-in a
session; nothing else deletes them. `Purger` runs from the app lifespan every `interval`
seconds (and once at start-up) and deletes, `batch` rows per statement so no statement holds
its locks for long:
- nonces past their `expires_at`, consumed or not (a nonce still unexpired stays, so a replay
  of its signed message answers `nonce_used`; once it is gone, `nonce_unknown`; both refuse);
- sessions past their `expires_at`, revoked or not (they resolve to nobody already).
Then it counts the outstanding challenges (unconsumed, unexpired) for `ChallengeCap`.

`ChallengeCap(limit)`: at most `limit` challenges outstanding across the deployment. Its count
is the last sweep's plus those this node stored (or is storing) since the sweep began, so N
nodes may overshoot by what the others issued within one interval. Past it, a challenge is refused with 429
`challenges_exhausted` (retry after the next sweep) instead of growing the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg

from roomserver.errors import RateLimited
from roomserver.periodic import Periodic

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000

# SKIP LOCKED: rows another node's purge (or a verification) holds are left to the next pass
_DELETE_NONCES = """DELETE FROM siws_nonces WHERE nonce IN (
    SELECT nonce FROM siws_nonces WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)"""
_DELETE_SESSIONS = """DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)"""
_OUTSTANDING = "SELECT count(*) FROM siws_nonces WHERE consumed_at IS NULL AND expires_at > now()"


class ChallengeCap:
    def __init__(self, limit: int, *, retry_after: float) -> None:
        if limit <= 0:
            raise ValueError("the challenge cap must be positive")
        self.limit, self.retry_after = limit, retry_after
        self.counted = 0  # outstanding at the last sweep
        self.pending = 0  # being stored by this node now
        self.issued = 0  # stored by this node, not known to be in `counted`

    @property
    def estimate(self) -> int:
        return self.counted + self.pending + self.issued

    @contextlib.contextmanager
    def issuing(self) -> Iterator[None]:
        """Around storing one challenge: 429 `challenges_exhausted` at the cap, else counted."""
        if self.estimate >= self.limit:
            raise RateLimited("too many sign-in challenges are outstanding; try again shortly",
                              retry_after=self.retry_after, code="challenges_exhausted")
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1
        self.issued += 1

    def observe(self, outstanding: int, *, issued_before: int) -> None:
        """A sweep counted `outstanding`; it started when `issued` was `issued_before`, so
        those are in its count (later ones may be too: counted twice, never missed)."""
        self.counted = outstanding
        self.issued -= min(issued_before, self.issued)


@dataclass
class PurgeStats:
    passes: int = 0
    nonces: int = 0  # rows deleted, all passes together
    sessions: int = 0
    failures: int = 0
    outstanding: int = 0  # challenges outstanding at the last pass


async def delete_in_batches(pool: asyncpg.Pool, statement: str, batch: int) -> int:
    """Run `statement` (a DELETE of at most $1 rows) until it deletes fewer than `batch`."""
    total = 0
    while True:
        deleted = int((await pool.execute(statement, batch)).split()[-1])
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(0)  # let other work in between batches


class Purger:
    def __init__(self, pool: asyncpg.Pool, cap: ChallengeCap | None = None, *,
                 interval: float, batch: int = DEFAULT_BATCH) -> None:
        if interval <= 0 or batch <= 0:
            raise ValueError("the purge interval and batch must be positive")
        self._pool, self.cap, self.interval, self.batch = pool, cap, interval, batch
        self.stats = PurgeStats()
        # the database down or restarting: a warning, and the next interval tries again
        self._loop = Periodic("sign-in purge pass", interval, self.run_once, first_now=True,
                              on_failure=self._failed, level=logging.WARNING)

    async def run_once(self) -> PurgeStats:
        """One pass: delete what has expired, then count what is outstanding."""
        self.stats.nonces += await delete_in_batches(self._pool, _DELETE_NONCES, self.batch)
        self.stats.sessions += await delete_in_batches(self._pool, _DELETE_SESSIONS, self.batch)
        issued_before = self.cap.issued if self.cap is not None else 0
        self.stats.outstanding = int(await self._pool.fetchval(_OUTSTANDING))
        if self.cap is not None:
            self.cap.observe(self.stats.outstanding, issued_before=issued_before)
        self.stats.passes += 1
        return self.stats

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()

    def _failed(self) -> None:
        self.stats.failures += 1

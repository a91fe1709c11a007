"""The sign-in purge against real PostgreSQL: expired challenges (consumed or not) and expired
sessions go, in batches; live ones stay; the cap on outstanding challenges holds; the app's
lifespan runs the purge."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest

from roomserver.config import Settings
from roomserver.errors import RateLimited
from roomserver.identity.purge import ChallengeCap, Purger
from roomserver.identity.sessions import SessionStore
from roomserver.identity.signin import SignIn
from roomserver.identity.wallet import Wallet
from roomserver.store.db import create_pool
from roomserver.store.ports import free_port
from tests.servers import run_app


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def _sign_in(signin: SignIn) -> tuple[str, str]:
    """(nonce, token): a challenge consumed by a real signature, and the session it opened."""
    wallet = Wallet.generate()
    challenge = await signin.challenge(wallet.address)
    body = wallet.verify_payload({"input": challenge.input.to_json()})
    done = await signin.verify(body["public_key"], body["message"], body["signature"])
    return challenge.nonce, done.token


async def _nonces(pool: asyncpg.Pool, nonces: list[str]) -> set[str]:
    rows = await pool.fetch("SELECT nonce FROM siws_nonces WHERE nonce = ANY($1)", nonces)
    return {r["nonce"] for r in rows}


async def test_expired_challenges_and_sessions_go_and_live_ones_stay(pool: asyncpg.Pool, settings: Settings) -> None:
    brief = dataclasses.replace(settings, nonce_ttl_seconds=1)
    short = SignIn(pool, SessionStore(pool, timedelta(seconds=1)), brief)
    lasting_sessions = SessionStore(pool, timedelta(hours=1))
    lasting = SignIn(pool, lasting_sessions, settings)

    old_unused = [(await short.challenge(None)).nonce for _ in range(5)]
    old_used, old_token = await _sign_in(short)
    live_unused = (await lasting.challenge(Wallet.generate().address)).nonce
    await asyncio.sleep(1.2)
    live_used, live_token = await _sign_in(lasting)  # its nonce lives 10 minutes, its session an hour
    assert await lasting_sessions.resolve(old_token) is None  # expired, but still a row

    purger = Purger(pool, interval=60, batch=2)  # several batches for the six expired nonces
    stats = await purger.run_once()

    everything = [*old_unused, old_used, live_unused, live_used]
    assert await _nonces(pool, everything) == {live_unused, live_used}
    assert stats.nonces >= 6 and stats.sessions >= 1
    live = await lasting_sessions.resolve(live_token)
    assert live is not None
    assert await pool.fetchval("SELECT count(*) FROM sessions WHERE expires_at <= now()") == 0
    assert await pool.fetchval("SELECT count(*) FROM sessions WHERE id = $1", live.id) == 1
    assert stats.outstanding == await pool.fetchval(
        "SELECT count(*) FROM siws_nonces WHERE consumed_at IS NULL AND expires_at > now()")

    again = await purger.run_once()  # nothing more to delete
    assert (again.nonces, again.sessions, again.passes) == (stats.nonces, stats.sessions, 2)


async def _outstanding(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(
        "SELECT count(*) FROM siws_nonces WHERE consumed_at IS NULL AND expires_at > now()"))


async def test_the_cap_refuses_challenges_past_it_until_a_sweep_counts_fewer(pool: asyncpg.Pool, settings: Settings) -> None:
    brief = dataclasses.replace(settings, nonce_ttl_seconds=1)
    already = await _outstanding(pool)  # the other tests' live challenges count too
    cap = ChallengeCap(already + 3, retry_after=5)
    purger = Purger(pool, cap, interval=60)
    await purger.run_once()
    assert cap.counted == already
    signin = SignIn(pool, SessionStore(pool, timedelta(hours=1)), brief, cap)
    before = await pool.fetchval("SELECT count(*) FROM siws_nonces")
    for _ in range(3):
        await signin.challenge(None)
    with pytest.raises(RateLimited) as refused:
        await signin.challenge(None)
    assert refused.value.code == "challenges_exhausted" and refused.value.retry_after == 5
    assert await pool.fetchval("SELECT count(*) FROM siws_nonces") == before + 3  # nothing stored
    await asyncio.sleep(1.2)
    await purger.run_once()  # they expired and went: the cap has room again
    assert cap.counted == already
    await signin.challenge(None)


async def test_the_app_purges_at_start_up_and_answers_the_cap_with_a_typed_429(pool: asyncpg.Pool, settings: Settings) -> None:
    brief = SignIn(pool, SessionStore(pool, timedelta(seconds=1)), dataclasses.replace(settings, nonce_ttl_seconds=1))
    expired = [(await brief.challenge(None)).nonce for _ in range(3)]
    await asyncio.sleep(1.2)
    port = free_port()
    capped = dataclasses.replace(settings, port=port, public_origin=f"http://127.0.0.1:{port}",
                                 challenge_cap=await _outstanding(pool) + 2, purge_interval_seconds=3600)
    async with run_app(capped) as url, httpx.AsyncClient(base_url=url) as http:
        async with asyncio.timeout(10):  # the first pass runs at start-up
            while await _nonces(pool, expired):
                await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # and its count (one query after the sessions' delete) is done
        statuses = [(await http.post("/api/v1/auth/siws/challenge", json={})).status_code for _ in range(2)]
        refused = await http.post("/api/v1/auth/siws/challenge", json={})
    assert statuses == [200, 200]
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "challenges_exhausted"
    assert int(refused.headers["Retry-After"]) == 3600

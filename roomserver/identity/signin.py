"""Sign-in: challenges with server-held nonces, verification that consumes a nonce exactly once."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from roomserver.config import Settings
from roomserver.identity import siws, users
from roomserver.identity.purge import ChallengeCap
from roomserver.identity.sessions import SessionStore

STATEMENT = "Sign in to roomserver to join your study rooms."


@dataclass(frozen=True)
class Challenge:
    nonce: str
    input: siws.SignInInput
    message: str | None


@dataclass(frozen=True)
class SignedIn:
    token: str
    expires_at: datetime
    user: users.User
    created: bool


class SignIn:
    def __init__(self, pool: asyncpg.Pool, sessions: SessionStore, settings: Settings,
                 cap: ChallengeCap | None = None):
        self._pool = pool
        self._sessions = sessions
        self._settings = settings
        self._cap = cap

    async def challenge(self, address: str | None) -> Challenge:
        """A fresh nonce and the sign-in input naming this server; the exact text when the
        wallet address is known (wallets that only do `signMessage` sign that text).
        429 `challenges_exhausted` past the cap on outstanding challenges."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self._settings.nonce_ttl_seconds)
        if address is not None:
            siws.decode_public_key(address)  # a valid base58 ed25519 key, or `malformed`
        inp = siws.SignInInput(
            domain=self._settings.domain, address=address, statement=STATEMENT,
            uri=self._settings.origin, version="1", chain_id=self._settings.solana_chain_id,
            nonce=siws.new_nonce(), issued_at=siws.format_timestamp(now),
            expiration_time=siws.format_timestamp(expires),
        )
        with self._cap.issuing() if self._cap is not None else contextlib.nullcontext():
            await self._pool.execute(
                """INSERT INTO siws_nonces (nonce, address, domain, uri, chain_id, statement, issued_at, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                inp.nonce, address, inp.domain, inp.uri, inp.chain_id, inp.statement, now, expires,
            )
        message = siws.build_message(inp) if address is not None else None
        assert inp.nonce is not None
        return Challenge(nonce=inp.nonce, input=inp, message=message)

    async def verify(self, public_key: str, message: str, signature: str, *,
                     ip: str | None = None, user_agent: str | None = None) -> SignedIn:
        """All the checks of the SIWS notes; raises siws.SiwsError with the reason."""
        key = siws.decode_public_key(public_key)
        signed = siws.decode_message(message)
        sig = siws.decode_signature(signature)
        now = datetime.now(UTC)
        expected = siws.Expected(domain=self._settings.domain, uri_origin=self._settings.origin,
                                 chain_id=self._settings.solana_chain_id, nonce=None, now=now)
        fields = siws.verify(signed, sig, key, expected)
        nonce = fields.nonce
        async with self._pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                "SELECT address, expires_at, consumed_at FROM siws_nonces WHERE nonce = $1 FOR UPDATE",
                nonce,
            )
            if record is None:
                raise siws.SiwsError("nonce_unknown")
            if record["consumed_at"] is not None:
                raise siws.SiwsError("nonce_used")
            if record["expires_at"] <= now:
                raise siws.SiwsError("expired", "the challenge has expired; ask for a new one")
            if record["address"] is not None and record["address"] != fields.address:
                raise siws.SiwsError("address_mismatch", "the challenge was issued to another wallet")
            await conn.execute("UPDATE siws_nonces SET consumed_at = now() WHERE nonce = $1", nonce)
            assert fields.address is not None
            user, created = await users.upsert_by_wallet(conn, fields.address)
            token, expires_at = await self._sessions.issue(conn, user.id, ip=ip, user_agent=user_agent)
            await users.audit(conn, user.id, "auth.sign_in", "user", user.id,
                              {"created": created}, ip)
        return SignedIn(token=token, expires_at=expires_at, user=user, created=created)

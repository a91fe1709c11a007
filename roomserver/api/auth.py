"""Sign-in over REST: challenge, verify, disconnect, and the signed-in user's profile."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from roomserver.api.guard import app_state, require_user
from roomserver.api.http import Endpoint, client_ip, client_key, read_body, reply
from roomserver.identity import users
from roomserver.identity.signin import SignIn


class ChallengeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(None, max_length=64, description="the wallet's base58 address, if known")


class ChallengeResponse(BaseModel):
    nonce: str
    message: str | None = Field(description="the exact text to sign; null when no address was given")
    input: dict[str, Any] = Field(description="wallet-standard SolanaSignInInput for `signIn`")
    expires_at: str


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    public_key: str = Field(max_length=64, description="base58 ed25519 public key")
    message: str = Field(max_length=12000, description="base64 of the exact signed bytes")
    signature: str = Field(max_length=128, description="base58 ed25519 signature")


class SessionUser(BaseModel):
    id: uuid.UUID
    wallet_address: str
    username: str | None = None


class VerifyResponse(BaseModel):
    token: str
    expires_at: datetime
    user: SessionUser
    new_user: bool


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str | None = Field(None, min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    display_name: str | None = Field(None, max_length=64)
    avatar_url: str | None = Field(None, max_length=500, description="an absolute https: or http: URL")
    bio: str | None = Field(None, max_length=1000)

    @field_validator("avatar_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        """Only http(s) images: `javascript:`, `data:` and other schemes are refused
        (clients put this in `src`/`href`)."""
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("https", "http") or not parts.hostname or not value.isprintable() \
                or any(ch.isspace() for ch in value):
            raise ValueError("avatar_url must be an absolute https: or http: URL")
        return value


class Disconnected(BaseModel):
    revoked: bool


class EarnedAchievement(BaseModel):
    code: str
    name: str
    description: str
    xp: int
    earned_at: datetime
    room_id: uuid.UUID | None = None


class AchievementList(BaseModel):
    xp: int
    level: int
    achievements: list[EarnedAchievement]


def _signin(request: Request) -> SignIn:
    return app_state(request).signin


async def challenge(request: Request) -> Response:
    state = app_state(request)
    await state.ip_limiter.hit(client_key(request))
    body = await read_body(request, ChallengeRequest)
    issued = await _signin(request).challenge(body.address)
    return reply(ChallengeResponse(nonce=issued.nonce, message=issued.message,
                                   input=issued.input.to_json(),
                                   expires_at=issued.input.expiration_time or ""))


async def verify(request: Request) -> Response:
    state = app_state(request)
    await state.ip_limiter.hit(client_key(request))
    body = await read_body(request, VerifyRequest)
    done = await _signin(request).verify(body.public_key, body.message, body.signature,
                                         ip=client_ip(request),
                                         user_agent=request.headers.get("user-agent"))
    user = SessionUser(id=done.user.id, wallet_address=done.user.wallet_address,
                       username=done.user.username)
    return reply(VerifyResponse(token=done.token, expires_at=done.expires_at, user=user,
                                new_user=done.created))


async def disconnect(request: Request) -> Response:
    session = await require_user(request)
    state = app_state(request)
    await state.sessions.revoke(session.id)
    await state.realtime.session_revoked(session.id)  # its sockets close on every node now
    await users.audit(state.db, session.user_id, "auth.sign_out", "session", session.id,
                      ip=client_ip(request))
    return reply(Disconnected(revoked=True))


async def profile(request: Request) -> Response:
    session = await require_user(request)
    return reply(await users.get(app_state(request).db, session.user_id))


async def update_profile(request: Request) -> Response:
    session = await require_user(request)
    body = await read_body(request, ProfileUpdate)
    changes = body.model_dump(exclude_unset=True)
    return reply(await users.update_profile(app_state(request).db, session.user_id, changes))


async def achievements(request: Request) -> Response:
    session = await require_user(request)
    state = app_state(request)
    user = await users.get(state.db, session.user_id)
    earned = await state.achievements.of_user(session.user_id)
    return reply(AchievementList(xp=user.xp, level=user.level,
                                 achievements=[EarnedAchievement(**a) for a in earned]))


ENDPOINTS = [
    Endpoint("POST", "/api/v1/auth/siws/challenge", challenge, "Ask for a sign-in challenge",
             "auth", body=ChallengeRequest, response=ChallengeResponse, auth=False, errors=(401, 429)),
    Endpoint("POST", "/api/v1/auth/wallet/verify", verify,
             "Verify a signed SIWS message and open a session", "auth", body=VerifyRequest,
             response=VerifyResponse, auth=False, errors=(401, 429)),
    Endpoint("POST", "/api/v1/auth/wallet/disconnect", disconnect, "Revoke this session", "auth",
             response=Disconnected),
    Endpoint("GET", "/api/v1/users/profile", profile, "The signed-in user", "users",
             response=users.User),
    Endpoint("PATCH", "/api/v1/users/profile", update_profile, "Update the signed-in user's profile",
             "users", body=ProfileUpdate, response=users.User, errors=(409,)),
    Endpoint("GET", "/api/v1/users/achievements", achievements,
             "The signed-in user's achievements, XP and level", "users", response=AchievementList),
]

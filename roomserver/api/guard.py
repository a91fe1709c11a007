"""Who is calling: the session behind `Authorization: Bearer`, rate limited per user and per IP."""

from __future__ import annotations

from starlette.requests import Request

from roomserver import errors
from roomserver.api.http import bearer_token, client_ip
from roomserver.identity.sessions import Session
from roomserver.state import AppState


def app_state(request: Request) -> AppState:
    state: AppState = request.state.rs
    return state


async def require_user(request: Request) -> Session:
    """The caller's live session: the one the route wrapper checked for an endpoint declared
    `auth=True`, else `authenticate`d now."""
    session = getattr(request.state, "session", None)
    if isinstance(session, Session):
        return session
    return await authenticate(request)


async def authenticate(request: Request) -> Session:
    """The caller's live session; 401 without one, 429 past the per-user or per-IP budget.
    Each call charges the budgets once: the route wrapper calls it, handlers ask `require_user`."""
    state = app_state(request)
    state.ip_limiter.check(client_ip(request))
    token = bearer_token(request)
    if token is None:
        raise errors.Unauthorized("sign in first: send Authorization: Bearer <token>",
                                  code="not_authenticated")
    session = await state.sessions.resolve(token)
    if session is None:
        raise errors.Unauthorized("the session is unknown, expired or revoked",
                                  code="session_invalid")
    state.user_limiter.check(str(session.user_id))
    request.state.session = session
    return session

"""Who is calling: the session behind `Authorization: Bearer`, rate limited per user, or per IP without one."""

from __future__ import annotations

from starlette.requests import Request

from roomserver import errors
from roomserver.api.http import bearer_token, client_key
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
    """The caller's live session; 401 without one, 429 past the budget charged.

    A request with a live session is charged to its user alone (USER budget); one without
    (no token, or an unknown, expired or revoked one) is charged to its client IP (IPv6 by
    /64), so failed authentication is throttled per address while signed-in users behind one
    proxy or NAT keep their own budgets. Each call charges once: the route wrapper calls it,
    handlers ask `require_user`."""
    state = app_state(request)
    token = bearer_token(request)
    session = None if token is None else await state.sessions.resolve(token)
    if session is None:
        state.ip_limiter.check(client_key(request))
        if token is None:
            raise errors.Unauthorized("sign in first: send Authorization: Bearer <token>",
                                      code="not_authenticated")
        raise errors.Unauthorized("the session is unknown, expired or revoked",
                                  code="session_invalid")
    state.user_limiter.check(str(session.user_id))
    request.state.session = session
    return session

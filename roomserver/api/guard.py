"""Who is calling: the session behind `Authorization: Bearer`, rate limited per user, or per IP without one."""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request

from roomserver import errors
from roomserver.api.http import bearer_token, client_key
from roomserver.identity.sessions import Session
from roomserver.observe import logs
from roomserver.state import AppState

log = logging.getLogger(__name__)


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
        await state.ip_limiter.hit(client_key(request))
        if token is None:
            raise errors.Unauthorized("sign in first: send Authorization: Bearer <token>",
                                      code="not_authenticated")
        raise errors.Unauthorized("the session is unknown, expired or revoked",
                                  code="session_invalid")
    logs.user_id.set(str(session.user_id))  # this request's log lines name the caller
    await state.user_limiter.hit(str(session.user_id))
    request.state.session = session
    return session


def is_operator(request: Request) -> bool:
    """Whether the caller sent `Authorization: Bearer <OPERATOR_TOKEN>` (constant time);
    False while OPERATOR_TOKEN is empty. For endpoints whose answer only grows for the
    operator (`/ready`); operator-only endpoints use `require_operator`."""
    expected = app_state(request).settings.operator_token.get_secret_value()
    given = bearer_token(request) or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


async def require_operator(request: Request) -> None:
    """Pass only with `Authorization: Bearer <OPERATOR_TOKEN>` (compared in constant time):
    403 `operator_disabled` while OPERATOR_TOKEN is empty, 401 `operator_token_invalid` for a
    wrong or missing token (charged to the IP's budget; logged without the token). The one
    operator check: endpoints declared `operator=True` (the route wrapper calls it)."""
    state = app_state(request)
    if not state.settings.operator_token.get_secret_value():
        raise errors.Forbidden("operator endpoints are off: set OPERATOR_TOKEN to serve them",
                               code="operator_disabled")
    if not is_operator(request):
        await state.ip_limiter.hit(client_key(request))
        log.warning("operator request %s %s refused: wrong or missing token from %s",
                    request.method, request.url.path, client_key(request))
        raise errors.Unauthorized("send Authorization: Bearer <OPERATOR_TOKEN>",
                                  code="operator_token_invalid")

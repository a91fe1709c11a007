"""Focus timers over REST: control and state of a room's timer, its history, the caller's
statistics. The policy lives in `roomserver.focus.FocusService`; this module only translates."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from roomserver.api.guard import app_state, require_user
from roomserver.api.http import Endpoint, path_uuid, read_body, read_query, reply
from roomserver.focus import FocusControl, FocusService
from roomserver.focus.models import FocusHistory, FocusStats, HistoryQuery, StatsQuery
from roomserver.protocol import FocusState


class FocusControlRequest(FocusControl):
    """`{"action": "start", "work_seconds", "break_seconds", "cycles"}` or
    `{"action": "pause" | "resume" | "skip" | "stop"}`."""


def _service(request: Request) -> FocusService:
    return app_state(request).focus


async def control_focus(request: Request) -> Response:
    session = await require_user(request)
    room_id = path_uuid(request, "room_id", "room_not_found")
    body = await read_body(request, FocusControlRequest)
    return reply(await _service(request).control(room_id, session.user_id, body))


async def get_focus(request: Request) -> Response:
    session = await require_user(request)
    room_id = path_uuid(request, "room_id", "room_not_found")
    return reply(await _service(request).state(room_id, session.user_id))


async def focus_history(request: Request) -> Response:
    session = await require_user(request)
    room_id = path_uuid(request, "room_id", "room_not_found")
    query = read_query(request, HistoryQuery)
    return reply(await _service(request).history(room_id, session.user_id, query.limit))


async def my_focus(request: Request) -> Response:
    session = await require_user(request)
    query = read_query(request, StatsQuery)
    return reply(await _service(request).stats(session.user_id, query.days))


_FOCUS = "/api/v1/rooms/{room_id}/focus"

ENDPOINTS = [
    Endpoint("POST", _FOCUS, control_focus,
             "Start, pause, resume, skip or stop the room's focus timer (owner or moderator; "
             "any member when the room's focus_open is set)", "focus",
             body=FocusControlRequest, response=FocusState, errors=(403, 404, 409)),
    Endpoint("GET", _FOCUS, get_focus, "The room's focus timer now (as the focus_state frame)",
             "focus", response=FocusState, errors=(404,)),
    Endpoint("GET", f"{_FOCUS}/history", focus_history, "The room's focus sessions, newest first",
             "focus", query=HistoryQuery, response=FocusHistory, errors=(404,)),
    Endpoint("GET", "/api/v1/users/focus", my_focus,
             "The caller's focus minutes per UTC day and per room", "focus", query=StatsQuery,
             response=FocusStats),
]

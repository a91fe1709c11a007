"""GET /api/v1/rooms/{room_id}/messages: a room's chat history by seq, for members.

Clients reload here after `recovered {complete: false}`: page with `after_seq` (exclusive)
until `next_after_seq` is null.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from roomserver import errors
from roomserver.api.guard import app_state, require_user
from roomserver.api.http import Endpoint, path_uuid, read_query, reply
from roomserver.rooms.models import MessagePage, StoredMessage


class MessagesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after_seq: int = Field(0, ge=0, le=2**63 - 1, description="return messages with a greater seq")
    limit: int = Field(50, ge=1, le=200)


async def list_messages(request: Request) -> Response:
    session = await require_user(request)
    state = app_state(request)
    room_id = path_uuid(request, "room_id", "room_not_found")
    query = read_query(request, MessagesQuery)
    await state.rooms.get(room_id, session.user_id)  # 404 when absent or hidden
    if await state.rooms.verified_membership(room_id, session.user_id) is None:
        raise errors.Forbidden("only members can read a room's messages", code="not_member")
    history = state.realtime.history_view
    rows = await history.messages(room_id, query.after_seq, query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return reply(MessagePage(messages=[StoredMessage(**r) for r in rows],
                             next_after_seq=rows[-1]["seq"] if more else None,
                             last_seq=await history.current_seq(str(room_id))))


ENDPOINTS = [
    Endpoint("GET", "/api/v1/rooms/{room_id}/messages", list_messages,
             "A room's messages in seq order, paginated by after_seq (members only)", "rooms",
             query=MessagesQuery, response=MessagePage, errors=(403, 404)),
]

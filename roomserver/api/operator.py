"""Operator endpoints, behind `Authorization: Bearer <OPERATOR_TOKEN>` (`require_operator`).

- `GET /api/v1/operator/rooms`: the live rooms (open, with someone present on some node) and,
  per node id, how many users are present through that node (the shared presence store: each
  node writes its own sockets' entries, so any node answers for all).
- `POST /api/v1/operator/users/{user_id}/disconnect`: revoke every live session of the user
  and close their sockets on every node (the sign-out path: `session_revoked`, close 4105).
- `POST /api/v1/operator/rooms/{room_id}/close`: close any room, through the owner's close and
  the node's one removal (close 4104 `room_closed` on every node).
- `POST /api/v1/operator/broadcast`: a durable system message (`new_message` of kind `system`,
  metadata `{"operator": true}`) in every open room, through the node's `announce`.

Each action (not the listing) writes one `audit_log` row with no actor, `operator.*` as its
action and the caller's IP. The notice text is not logged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from roomserver.api.guard import app_state
from roomserver.api.http import Endpoint, client_ip, path_uuid, read_body, reply
from roomserver.identity import users
from roomserver.rooms import Room


class LiveRoom(BaseModel):
    room_id: str
    name: str
    members: int = Field(description="users present in the room on any node")
    nodes: dict[str, int] = Field(description="node id -> users present through that node")


class LiveRooms(BaseModel):
    node: str = Field(description="the id of the node that answered")
    rooms: list[LiveRoom]


class UserDisconnected(BaseModel):
    user_id: str
    sessions_revoked: int


class BroadcastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)


class Broadcasted(BaseModel):
    rooms: int = Field(description="open rooms the notice was written to")


async def live_rooms(request: Request) -> Response:
    state = app_state(request)
    rooms = []
    for room_id, name in await state.rooms.open_rooms(with_members=True):
        members, nodes = await state.realtime.census(str(room_id))
        if members:
            rooms.append(LiveRoom(room_id=str(room_id), name=name, members=members, nodes=nodes))
    return reply(LiveRooms(node=state.realtime.node_id, rooms=rooms))


async def disconnect_user(request: Request) -> Response:
    state = app_state(request)
    user_id = path_uuid(request, "user_id", "user_not_found")
    await users.get(state.db, user_id)  # 404 user_not_found
    revoked = await state.sessions.revoke_user(user_id)
    for session_id in revoked:
        await state.realtime.session_revoked(session_id)
    await users.audit(state.db, None, "operator.user_disconnect", "user", user_id,
                      {"sessions_revoked": len(revoked)}, client_ip(request))
    return reply(UserDisconnected(user_id=str(user_id), sessions_revoked=len(revoked)))


async def close_room(request: Request) -> Response:
    state = app_state(request)
    room_id = path_uuid(request, "room_id", "room_not_found")
    return reply(await state.rooms.close_by_operator(room_id, client_ip(request)))


async def broadcast(request: Request) -> Response:
    state = app_state(request)
    body = await read_body(request, BroadcastRequest)
    rooms = await state.rooms.open_rooms()
    for room_id, _ in rooms:
        await state.realtime.announce(room_id, body.text, {"operator": True})
    await users.audit(state.db, None, "operator.broadcast", None, None,
                      {"rooms": len(rooms), "length": len(body.text)}, client_ip(request))
    return reply(Broadcasted(rooms=len(rooms)))


_OP = "/api/v1/operator"

ENDPOINTS = [
    Endpoint("GET", f"{_OP}/rooms", live_rooms, "Live rooms with users present per node (operator)",
             "operations", response=LiveRooms, auth=False, operator=True),
    Endpoint("POST", f"{_OP}/users/{{user_id}}/disconnect", disconnect_user,
             "Revoke a user's sessions and close their sockets on every node (operator)",
             "operations", response=UserDisconnected, auth=False, operator=True, errors=(404,)),
    Endpoint("POST", f"{_OP}/rooms/{{room_id}}/close", close_room,
             "Close any room; its sockets close on every node (operator)", "operations",
             response=Room, auth=False, operator=True, errors=(404,)),
    Endpoint("POST", f"{_OP}/broadcast", broadcast,
             "A durable system message in every open room (operator)", "operations",
             body=BroadcastRequest, response=Broadcasted, auth=False, operator=True),
]

"""Rooms over REST: create, list, get, update, close, join, leave, participants, roles, bans,
invitations. The policy lives in `roomserver.rooms.RoomService`; this module only translates.

A path id that is not a UUID names nothing, so it answers 404 with the resource's code
(`room_not_found`, `user_not_found`), exactly as an unknown UUID does. Ids in bodies are
validated like any other field (400 `validation_error`).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response

from roomserver.api.guard import app_state, require_user
from roomserver.api.http import Endpoint, path_uuid, read_body, read_query, reply
from roomserver.rooms import (
    Ban,
    Invitation,
    Participant,
    Room,
    RoomChanges,
    RoomDraft,
    RoomFilter,
    RoomPage,
    RoomService,
)


class CreateRoomRequest(RoomDraft):
    """`access_token_mint` + `min_token_amount` are required for token_gated rooms,
    `access_nft_collection` for nft_gated ones, and refused for the other types."""


class UpdateRoomRequest(RoomChanges):
    """Only the fields sent change; `topic: null` clears the topic."""


class RoomQuery(RoomFilter):
    pass


class RoleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["moderator", "member"]


class BanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: uuid.UUID
    reason: str | None = Field(None, max_length=500)


class InviteRequest(BaseModel):
    """Exactly one of `user_id` or `wallet_address` (a wallet that has signed in before)."""

    model_config = ConfigDict(extra="forbid")
    user_id: uuid.UUID | None = None
    wallet_address: str | None = Field(None, min_length=32, max_length=44)

    @model_validator(mode="after")
    def _exactly_one(self) -> InviteRequest:
        if (self.user_id is None) == (self.wallet_address is None):
            raise ValueError("give exactly one of user_id or wallet_address")
        return self


class ParticipantList(BaseModel):
    participants: list[Participant]


class Left(BaseModel):
    left: bool


class Unbanned(BaseModel):
    unbanned: bool


def _service(request: Request) -> RoomService:
    return app_state(request).rooms


def _room_id(request: Request) -> uuid.UUID:
    return path_uuid(request, "room_id", "room_not_found")


async def create_room(request: Request) -> Response:
    session = await require_user(request)
    body = await read_body(request, CreateRoomRequest)
    room = await _service(request).create(session.user_id, body)
    return reply(room, status=201)


async def list_rooms(request: Request) -> Response:
    session = await require_user(request)
    query = read_query(request, RoomQuery)
    return reply(await _service(request).list_rooms(session.user_id, query))


async def get_room(request: Request) -> Response:
    session = await require_user(request)
    return reply(await _service(request).get(_room_id(request), session.user_id))


async def update_room(request: Request) -> Response:
    session = await require_user(request)
    room_id = _room_id(request)
    body = await read_body(request, UpdateRoomRequest)
    return reply(await _service(request).update(room_id, session.user_id, body))


async def close_room(request: Request) -> Response:
    session = await require_user(request)
    return reply(await _service(request).close(_room_id(request), session.user_id))


async def join_room(request: Request) -> Response:
    session = await require_user(request)
    member = await _service(request).admit(session.user_id, session.wallet_address,
                                           _room_id(request))
    return reply(member)


async def leave_room(request: Request) -> Response:
    session = await require_user(request)
    await _service(request).leave(_room_id(request), session.user_id)
    return reply(Left(left=True))


async def list_participants(request: Request) -> Response:
    session = await require_user(request)
    people = await _service(request).participants(_room_id(request), session.user_id)
    return reply(ParticipantList(participants=people))


async def set_role(request: Request) -> Response:
    session = await require_user(request)
    room_id = _room_id(request)
    target = path_uuid(request, "user_id", "user_not_found")
    body = await read_body(request, RoleRequest)
    return reply(await _service(request).set_role(room_id, session.user_id, target, body.role))


async def ban_user(request: Request) -> Response:
    session = await require_user(request)
    room_id = _room_id(request)
    body = await read_body(request, BanRequest)
    ban = await _service(request).ban(room_id, session.user_id, body.user_id, body.reason)
    return reply(ban, status=201)


async def unban_user(request: Request) -> Response:
    session = await require_user(request)
    room_id = _room_id(request)
    target = path_uuid(request, "user_id", "user_not_found")
    await _service(request).unban(room_id, session.user_id, target)
    return reply(Unbanned(unbanned=True))


async def invite_user(request: Request) -> Response:
    session = await require_user(request)
    room_id = _room_id(request)
    body = await read_body(request, InviteRequest)
    invitation = await _service(request).invite(room_id, session.user_id, user_id=body.user_id,
                                                wallet_address=body.wallet_address)
    return reply(invitation, status=201)


_ROOM = "/api/v1/rooms/{room_id}"

ENDPOINTS = [
    Endpoint("POST", "/api/v1/rooms", create_room, "Create a room; the caller becomes its owner",
             "rooms", body=CreateRoomRequest, response=Room, status=201, errors=(403, 503)),
    Endpoint("GET", "/api/v1/rooms", list_rooms, "List rooms visible to the caller, newest first",
             "rooms", query=RoomQuery, response=RoomPage),
    Endpoint("GET", _ROOM, get_room, "One room (private rooms: members and invitees only)", "rooms",
             response=Room, errors=(404,)),
    Endpoint("PATCH", _ROOM, update_room, "Update a room (owner)", "rooms",
             body=UpdateRoomRequest, response=Room, errors=(403, 404, 409)),
    Endpoint("DELETE", _ROOM, close_room, "Close a room (owner)", "rooms", response=Room,
             errors=(403, 404)),
    Endpoint("POST", f"{_ROOM}/join", join_room, "Join a room, or confirm the membership", "rooms",
             response=Participant, errors=(403, 404, 503)),
    Endpoint("POST", f"{_ROOM}/leave", leave_room, "Leave a room", "rooms", response=Left,
             errors=(404, 409)),
    Endpoint("GET", f"{_ROOM}/participants", list_participants, "A room's current members",
             "rooms", response=ParticipantList, errors=(403, 404)),
    Endpoint("PUT", f"{_ROOM}/participants/{{user_id}}/role", set_role,
             "Make a member a moderator or a member again (owner)", "rooms", body=RoleRequest,
             response=Participant, errors=(403, 404)),
    Endpoint("POST", f"{_ROOM}/bans", ban_user, "Ban a user from the room (owner or moderator)",
             "rooms", body=BanRequest, response=Ban, status=201, errors=(403, 404, 409)),
    Endpoint("DELETE", f"{_ROOM}/bans/{{user_id}}", unban_user, "Lift a ban (owner or moderator)",
             "rooms", response=Unbanned, errors=(403, 404, 409)),
    Endpoint("POST", f"{_ROOM}/invitations", invite_user,
             "Invite a user by id or wallet (owner or moderator)", "rooms", body=InviteRequest,
             response=Invitation, status=201, errors=(403, 404)),
]

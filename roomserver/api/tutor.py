"""The tutor over REST: ask with a server-sent events stream (the same code path as the
`socratic_query` frame: the room sees the answer too), list a room's threads and a thread's
turns, and the room owner's tutor options. Members only.

SSE stream: one `event: socratic_response` per frame, `data:` the frame as JSON (exactly the
WebSocket frame), ending after the frame with `done: true`. Budget refusals come before the
stream starts, as JSON 429 `rate_limited`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from roomserver import errors
from roomserver.api.guard import app_state, require_user
from roomserver.api.http import Endpoint, path_uuid, read_body, reply
from roomserver.protocol import SocraticResponse, encode
from roomserver.tutor import Question, TutorService, store
from roomserver.tutor.store import Thread, Turn


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=8000)
    thread_id: uuid.UUID | None = None


class ThreadList(BaseModel):
    threads: list[Thread]


class TurnList(BaseModel):
    thread: Thread
    turns: list[Turn]


class TutorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_public: bool = Field(description="also draw on public documents, not only those shared to the room")


def _tutor(request: Request) -> TutorService:
    tutor: TutorService | None = getattr(app_state(request), "tutor", None)
    if tutor is None:
        raise errors.Unavailable("the tutor is not available", code="tutor_unavailable")
    return tutor


async def _member(request: Request) -> tuple[uuid.UUID, uuid.UUID, str]:
    """(room, user, role) of a current member; 404 for an unknown room, 403 for others."""
    session = await require_user(request)
    room_id = path_uuid(request, "room_id", "room_not_found")
    participant = await app_state(request).rooms.verified_membership(room_id, session.user_id)
    if participant is None:
        await app_state(request).rooms.get(room_id, session.user_id)  # 404 if there is no room
        raise errors.Forbidden("only members of the room can use its tutor", code="not_member")
    return room_id, session.user_id, participant.role


async def ask(request: Request) -> Response:
    room_id, user_id, _ = await _member(request)
    body = await read_body(request, AskRequest)
    frames: asyncio.Queue[SocraticResponse] = asyncio.Queue()
    await _tutor(request).ask(Question(room_id, user_id, body.question, body.thread_id),
                              listener=frames.put_nowait)

    async def events() -> AsyncIterator[bytes]:
        while True:
            frame = await frames.get()
            yield f"event: socratic_response\ndata: {encode(frame)}\n\n".encode()
            if frame.done:
                return

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def list_threads(request: Request) -> Response:
    room_id, _, _ = await _member(request)
    return reply(ThreadList(threads=await store.list_threads(app_state(request).db, room_id)))


async def thread_turns(request: Request) -> Response:
    room_id, _, _ = await _member(request)
    thread_id = path_uuid(request, "thread_id", "thread_not_found")
    pool = app_state(request).db
    thread = await store.get_thread(pool, room_id, thread_id)
    if thread is None:
        raise errors.NotFound("no such tutor thread in this room", code="thread_not_found")
    return reply(TurnList(thread=thread, turns=await store.thread_turns(pool, room_id, thread_id)))


async def set_options(request: Request) -> Response:
    room_id, _, role = await _member(request)
    if role != "owner":
        raise errors.Forbidden("only the room's owner can change its tutor options", code="not_owner")
    body = await read_body(request, TutorOptions)
    await store.set_include_public(app_state(request).db, room_id, body.include_public)
    return reply(body)


ENDPOINTS = [
    Endpoint("POST", "/api/v1/rooms/{room_id}/tutor", ask,
             "Ask the room's tutor; the answer streams as server-sent events (and to the room)",
             "tutor", body=AskRequest, errors=(400, 401, 403, 404, 429, 503), produces="text/event-stream"),
    Endpoint("GET", "/api/v1/rooms/{room_id}/tutor/threads", list_threads,
             "The room's tutor threads, most recently active first", "tutor",
             response=ThreadList, errors=(401, 403, 404)),
    Endpoint("GET", "/api/v1/rooms/{room_id}/tutor/threads/{thread_id}", thread_turns,
             "One tutor thread with its turns (question, answer, sources, status, tokens)", "tutor",
             response=TurnList, errors=(401, 403, 404)),
    Endpoint("PUT", "/api/v1/rooms/{room_id}/tutor/options", set_options,
             "The room's tutor options (owner only)", "tutor", body=TutorOptions,
             response=TutorOptions, errors=(400, 401, 403, 404)),
]

"""A room socket client for tests: opens the socket with `roomserver.client.open_socket` (the
subprotocol token, the welcome) and keeps every frame received, raw, so tests can look at the
wire itself; no reconnection, no deduplication (`roomserver.client.RoomSocket` does those)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from roomserver.client import SocketOptions, open_socket
from roomserver.client import room_url as ws_url
from roomserver.protocol import DURABLE_TYPES
from tests.clients import SignedInUser

Frame = dict[str, Any]
__all__ = ["Frame", "RoomClient", "create_room", "ws_url"]


class RoomClient:
    """One socket in one room; `frames` keeps everything received, in order."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[Frame] = []
        self._cursor = 0

    @classmethod
    async def open(cls, base_url: str, user: SignedInUser, room_id: str, *,
                   origin: str | None = None, local_addr: tuple[str, int] | None = None,
                   **query: Any) -> RoomClient:
        """`local_addr`: connect from that address (any of 127.0.0.0/8 reaches the server)."""
        options = SocketOptions(origin=origin, max_size=None, open_timeout=10, close_timeout=10, tries=1,
                                local_addr=local_addr)
        opened = await open_socket(base_url, room_id, user.token, options=options, **query)
        client = cls(opened.ws)
        client.frames.append(opened.welcome_json)
        client._cursor = 1
        return client

    async def send(self, **frame: Any) -> None:
        await self.conn.send(orjson.dumps(frame).decode())

    async def next(self, timeout: float = 10) -> Frame:
        """The next frame not yet returned by `next`/`wait_for`."""
        while self._cursor >= len(self.frames):
            raw = await asyncio.wait_for(self.conn.recv(), timeout)
            self.frames.append(orjson.loads(raw))
        frame = self.frames[self._cursor]
        self._cursor += 1
        return frame

    async def wait_for(self, match: Callable[[Frame], bool], timeout: float = 10) -> Frame:
        """Skip frames until one matches."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                if match(frame):
                    return frame

    async def request(self, timeout: float = 10, **frame: Any) -> Frame:
        """Send a frame with a client_msg_id and return its ack or error."""
        ref = frame["client_msg_id"]
        await self.send(**frame)
        return await self.wait_for(
            lambda f: f.get("type") in ("ack", "error") and (f.get("client_msg_id") == ref or f.get("ref") == ref),
            timeout)

    async def closed_with(self, timeout: float = 10) -> int | None:
        """Read until the server closes; the close code it sent."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.frames.append(orjson.loads(await self.conn.recv()))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None

    def durable(self) -> list[Frame]:
        return [f for f in self.frames if f["type"] in DURABLE_TYPES]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close()


async def create_room(http: httpx.AsyncClient, owner: SignedInUser, **body: Any) -> str:
    answer = await http.post("/api/v1/rooms", headers=owner.headers,
                             json={"name": "Thermo", "room_type": "public", **body})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])

"""`Client`: one user of one server over REST, and the factory of their room sockets.

`sign_in(wallet)` runs Sign-In-With-Solana (challenge, sign like Phantom's `signIn`, verify) and
keeps the session token for every later call. Calls return the server's own models
(`roomserver.rooms.models`), raise `ApiError` with the server's code for a refusal and
`Unreachable` when the server cannot be reached (429/503 and transport errors are retried
first, see `Rest`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from roomserver.client.connect import DEFAULT_OPTIONS, SocketOptions
from roomserver.client.errors import ClientError
from roomserver.client.rest import OnRetry, Rest
from roomserver.client.room import RoomSocket
from roomserver.identity.wallet import Wallet
from roomserver.rooms.models import MessagePage, Participant, Room, RoomPage, StoredMessage


@dataclass(frozen=True)
class Session:
    """A signed-in wallet: the bearer token and who it is."""

    wallet: Wallet
    token: str
    user_id: str
    user: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_in(rest: Rest, wallet: Wallet) -> Session:
    """Sign-In-With-Solana: challenge, sign like Phantom's `signIn`, verify; the session."""
    challenge = await rest.json("POST", "/api/v1/auth/siws/challenge", json={"address": wallet.address})
    verified = await rest.json("POST", "/api/v1/auth/wallet/verify", json=wallet.verify_payload(challenge))
    return Session(wallet, str(verified["token"]), str(verified["user"]["id"]), verified["user"])


class Client:
    """REST calls as one user, and their room sockets. Use `async with` (or `aclose()`)."""

    def __init__(self, url: str, *, http: httpx.AsyncClient | None = None, tries: int = 8,
                 concurrency: int = 32, on_retry: OnRetry | None = None,
                 socket_options: SocketOptions = DEFAULT_OPTIONS) -> None:
        self.url = url
        self.rest = Rest(url, http=http, tries=tries, concurrency=concurrency, on_retry=on_retry)
        self.socket_options = socket_options
        self.session: Session | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.rest.aclose()

    @property
    def token(self) -> str:
        if self.session is None:
            raise ClientError("not signed in: call sign_in(wallet) first")
        return self.session.token

    # ---- sign-in ----

    async def sign_in(self, wallet: Wallet | None = None) -> Session:
        """SIWS challenge + verify with `wallet` (a new one when None); the session."""
        self.session = await sign_in(self.rest, wallet or Wallet.generate())
        return self.session

    async def sign_out(self) -> None:
        """Revoke the session (its sockets close with 4105 on every node)."""
        await self._json("POST", "/api/v1/auth/wallet/disconnect")
        self.session = None

    # ---- rooms ----

    async def create_room(self, name: str, room_type: str = "public", **fields: Any) -> Room:
        """A new room owned by this user (fields as in docs/api.md, creating a room)."""
        body = {"name": name, "room_type": room_type, **fields}
        return Room.model_validate(await self._json("POST", "/api/v1/rooms", json=body, expect=(201,)))

    async def rooms(self, **filters: Any) -> RoomPage:
        """One page of rooms (`q`, `room_type`, `tag`, `mine`, `include_closed`, `limit`, `cursor`)."""
        params = {k: _query(v) for k, v in filters.items() if v is not None}
        return RoomPage.model_validate(await self._json("GET", "/api/v1/rooms", params=params))

    async def room(self, room_id: str) -> Room:
        return Room.model_validate(await self._json("GET", f"/api/v1/rooms/{room_id}"))

    async def join(self, room_id: str) -> Participant:
        """Become a member (the join policy decides; ApiError `not_invited`, `room_full`, ...)."""
        return Participant.model_validate(await self._json("POST", f"/api/v1/rooms/{room_id}/join"))

    async def leave(self, room_id: str) -> None:
        await self._json("POST", f"/api/v1/rooms/{room_id}/leave")

    async def messages(self, room_id: str, *, after_seq: int = 0, limit: int = 50) -> MessagePage:
        """One page of the room's messages with a seq above `after_seq` (members only)."""
        params = {"after_seq": after_seq, "limit": limit}
        return MessagePage.model_validate(
            await self._json("GET", f"/api/v1/rooms/{room_id}/messages", params=params))

    async def history(self, room_id: str, *, after_seq: int = 0) -> AsyncIterator[StoredMessage]:
        """Every message after `after_seq`, page after page (the reload after an incomplete recovery)."""
        while True:
            page = await self.messages(room_id, after_seq=after_seq, limit=200)
            for message in page.messages:
                yield message
            if page.next_after_seq is None:
                return
            after_seq = page.next_after_seq

    # ---- sockets ----

    def socket(self, room_id: str, *, reconnect: bool = True) -> RoomSocket:
        """This user's socket in a room, not yet open: `async with client.socket(id) as room:`."""
        return RoomSocket(self.url, room_id, self.token, options=self.socket_options, reconnect=reconnect)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.rest.json(method, path, token=self.token, **kwargs)


def _query(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value

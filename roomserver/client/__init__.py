"""A small async Python client for roomserver (docs/client.md).

    async with Client("http://127.0.0.1:8000") as client:
        await client.sign_in(Wallet.generate())
        room = await client.create_room("Thermo")
        async with client.socket(str(room.id)) as socket:
            ack = await socket.chat("Is entropy a state function?")

Needs only the core install (websockets, httpx). The server never imports it.
"""

from roomserver.client.api import Client, Session, sign_in
from roomserver.client.connect import Opened, SocketOptions, open_socket, room_url
from roomserver.client.errors import (
    ApiError,
    ClientError,
    Closed,
    TargetError,
    UnexpectedFrame,
    Unreachable,
    reconnectable,
)
from roomserver.client.rest import Rest, targets
from roomserver.client.room import RoomSocket
from roomserver.identity.wallet import Wallet

__all__ = [
    "ApiError", "Client", "ClientError", "Closed", "Opened", "Rest", "RoomSocket", "Session",
    "SocketOptions", "TargetError", "UnexpectedFrame", "Unreachable", "Wallet", "open_socket",
    "reconnectable", "room_url", "sign_in", "targets",
]

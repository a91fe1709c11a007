"""The frame-caching uvicorn protocol `python -m roomserver serve` runs (roomserver.api.ws)."""

from __future__ import annotations

import asyncio

import uvicorn
from websockets.asyncio.client import connect

from roomserver.api.ws import WRITE_TEXT, FrameCachingProtocol
from roomserver.store.ports import free_port


async def test_one_str_object_reaches_every_socket_and_others_still_work() -> None:
    shared = "shared " * 30
    big = "b" * 70000
    sockets: list[object] = []
    ready = asyncio.Event()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        write_text = scope["extensions"][WRITE_TEXT]
        assert write_text("too early") is False  # not accepted yet: nothing written
        await send({"type": "websocket.accept"})
        sockets.append(send)
        if len(sockets) == 3:
            ready.set()
        await ready.wait()
        assert write_text(shared) is True  # the hub's synchronous fast path
        for text in (shared, big, f"own {len(sockets)}"):  # the same objects for all
            await send({"type": "websocket.send", "text": text})
        await send({"type": "websocket.send", "bytes": b"\x00bin"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close", "code": 1000})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws=FrameCachingProtocol,
                                           ws_per_message_deflate=False, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        async def client() -> list[str | bytes]:
            async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
                got = [await ws.recv() for _ in range(5)]
                await ws.send("hi")
                got.append(await ws.recv())
                return got

        results = await asyncio.gather(*(client() for _ in range(3)))
        for got in results:
            assert got[:3] == [shared, shared, big]
            assert str(got[3]).startswith("own ") and got[4] == b"\x00bin" and got[5] == "echo hi"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)

"""The frame-caching uvicorn protocol `python -m roomserver serve` runs (roomserver.api.ws)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvicorn
from websockets.asyncio.client import connect

from roomserver.api import ws
from roomserver.api.ws import WRITE_TEXT, FrameCachingProtocol, text_frame
from roomserver.store.ports import free_port


async def test_one_str_object_reaches_every_socket_and_others_still_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Like the hub, one str object goes to three sockets, by the fast path and by ASGI send:
    each object is framed once however many sockets it reaches (counted at `text_frame`)."""
    shared = "shared " * 30
    big = "b" * 70000
    framed: list[str] = []
    monkeypatch.setattr(ws, "text_frame", lambda text: framed.append(text) or text_frame(text))
    writers: list[Callable[[str], bool]] = []
    ready, fanned, step = asyncio.Event(), asyncio.Event(), asyncio.Barrier(3)

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
        writers.append(write_text)
        if len(writers) == 3:
            ready.set()
        await fanned.wait()  # the test has written `shared` to every socket, as the hub does
        for text in (shared, big):  # the same objects for all, each sent by all in turn
            await send({"type": "websocket.send", "text": text})
            await step.wait()
        await send({"type": "websocket.send", "text": f"own {len(writers)}"})
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

        clients = [asyncio.create_task(client()) for _ in range(3)]
        await asyncio.wait_for(ready.wait(), 10)
        assert [write(shared) for write in writers] == [True] * 3  # the hub's synchronous fast path
        fanned.set()
        results = await asyncio.gather(*clients)
        for got in results:
            assert got[:3] == [shared, shared, big]
            assert str(got[3]).startswith("own ") and got[4] == b"\x00bin" and got[5] == "echo hi"
        assert sum(text is shared for text in framed) == 1  # six writes of it, one frame built
        assert sum(text is big for text in framed) == 1  # three sends, one frame built
        assert len(framed) == 2 + 3 + 3  # plus three distinct "own" and three "echo" texts
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)

"""The browser client at `/`, served by the app: the right types and headers, only the listed
assets (its static contents are checked in tests/unit/test_web_client.py).

A real browser run (headless Chromium: sign in with the browser key, create a room, chat) is
done by hand, not here: CI does not install a browser. The last test replays the page's
sign-in and socket handshake byte for byte, as the browser sends them (Origin included).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from importlib import resources

import base58
import httpx
import pytest
from nacl.signing import SigningKey
from websockets.asyncio.client import connect

from roomserver.config import Settings
from roomserver.library.embeddings import HashingEmbedder
from tests.servers import run_app

STATIC = resources.files("roomserver").joinpath("static")


def read(name: str) -> str:
    return STATIC.joinpath(name).read_text("utf-8")


@pytest.fixture(scope="module")
async def base_url(settings: Settings) -> AsyncIterator[str]:
    """The whole app, with the hashing embedder: this module needs no language model."""
    async with run_app(settings, embedder=HashingEmbedder()) as url:
        yield url


async def test_page_is_served_as_html_with_a_strict_policy(http: httpx.AsyncClient) -> None:
    res = await http.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"] == "text/html; charset=utf-8"
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "object-src 'none'" in csp
    assert res.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/app.js"></script>' in res.text
    assert 'href="/static/style.css"' in res.text
    assert (await http.head("/")).status_code == 200


@pytest.mark.parametrize(("name", "media_type"), [("app.js", "text/javascript; charset=utf-8"),
                                                  ("style.css", "text/css; charset=utf-8")])
async def test_assets_have_their_content_types(http: httpx.AsyncClient, name: str,
                                               media_type: str) -> None:
    res = await http.get(f"/static/{name}")
    assert res.status_code == 200
    assert res.headers["content-type"] == media_type
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.text == read(name)


@pytest.mark.parametrize("path", ["/static/index.html.bak", "/static/..%2fweb.py", "/static/web.py",
                                  "/static/", "/static/app.js/x"])
async def test_only_the_listed_assets_are_served(http: httpx.AsyncClient, path: str) -> None:
    res = await http.get(path)
    assert res.status_code == 404
    assert "error" in res.json()


async def test_the_pages_sign_in_and_socket_handshake_work(http: httpx.AsyncClient, base_url: str) -> None:
    """What app.js does with a browser key, step by step, with the browser's Origin header."""
    key = SigningKey.generate()
    address = base58.b58encode(bytes(key.verify_key)).decode()
    challenge = (await http.post("/api/v1/auth/siws/challenge", json={"address": address})).json()
    assert challenge["input"]["uri"] == base_url  # the page compares it with location.origin
    message = challenge["message"].encode()
    body = {"public_key": address, "message": base64.b64encode(message).decode(),
            "signature": base58.b58encode(key.sign(message).signature).decode()}
    res = await http.post("/api/v1/auth/wallet/verify", json=body)
    assert res.status_code == 200, res.text
    token = res.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    room = (await http.post("/api/v1/rooms", json={"name": "Web <b>room</b>", "room_type": "public"},
                            headers=auth)).json()
    assert (await http.post(f"/api/v1/rooms/{room['id']}/join", headers=auth)).status_code == 200
    url = base_url.replace("http", "ws", 1) + f"/ws/rooms/{room['id']}"
    async with connect(url, subprotocols=["roomserver.v1", f"bearer.{token}"],  # type: ignore[list-item]
                       origin=base_url) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "roomserver.v1"
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["room"]["name"] == "Web <b>room</b>"
        await ws.send(json.dumps({"type": "chat_message", "text": "hi", "client_msg_id": "c-1"}))
        seen: dict[str, dict] = {}
        while len(seen.keys() & {"ack", "new_message"}) < 2:  # presence frames may come first
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            seen[frame["type"]] = frame
        assert seen["ack"]["client_msg_id"] == "c-1"
        assert seen["new_message"]["message"]["text"] == "hi"
    page = (await http.get(f"/api/v1/rooms/{room['id']}/messages?after_seq=0&limit=200",
                           headers=auth)).json()
    assert [m["text"] for m in page["messages"]] == ["hi"]

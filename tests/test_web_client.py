"""The browser client at `/`: served with the right types and headers, small, offline, XSS-safe
by construction, and speaking the real REST endpoints and WebSocket frames.

A real browser run (headless Chromium: sign in with the browser key, create a room, chat) is
done by hand, not here: CI does not install a browser. The last test replays the page's
sign-in and socket handshake byte for byte, as the browser sends them (Origin included).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from importlib import resources

import base58
import httpx
import pytest
from nacl.signing import SigningKey
from websockets.asyncio.client import connect

from roomserver.api import web
from roomserver.app import all_endpoints
from roomserver.config import Settings
from roomserver.library.embeddings import HashingEmbedder
from roomserver.protocol import CLIENT_TYPES, SERVER_TYPES
from tests.servers import run_app

STATIC = resources.files("roomserver").joinpath("static")


def read(name: str) -> str:
    return STATIC.joinpath(name).read_text("utf-8")


@pytest.fixture(scope="module")
async def base_url(settings: Settings) -> AsyncIterator[str]:
    """The whole app, with the hashing embedder: this module needs no language model."""
    async with run_app(settings, embedder=HashingEmbedder()) as url:
        yield url


@pytest.fixture(scope="module")
def js() -> str:
    return read("app.js")


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


def test_assets_are_small_and_self_contained() -> None:
    names = ["index.html", *web.ASSETS]
    assert sum(len(STATIC.joinpath(n).read_bytes()) for n in names) < 40_000
    for name in names:
        text = read(name)
        # offline: no CDN, no remote fonts or scripts
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
        assert "@import" not in text


def test_user_text_never_goes_through_html_parsing(js: str) -> None:
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"on", "javascript:"):
        assert sink not in js, sink
    assert "textContent" in js


def test_the_client_uses_the_real_rest_endpoints(js: str) -> None:
    served = {(ep.method, re.sub(r"\{[^}]+\}", "{}", ep.path)) for ep in all_endpoints()}
    used = set()
    for method, path in re.findall(r'api\("([A-Z]+)", [`"]([^`"]+)[`"]', js):
        path = re.sub(r"\$\{[^}]+\}", "{}", "/api/v1" + path).split("?")[0]
        used.add((method, path))
    assert used >= {("POST", "/api/v1/auth/siws/challenge"), ("POST", "/api/v1/auth/wallet/verify"),
                    ("GET", "/api/v1/rooms"), ("POST", "/api/v1/rooms"),
                    ("POST", "/api/v1/rooms/{}/join"), ("GET", "/api/v1/rooms/{}/messages")}
    assert used <= served, used - served


def test_the_client_speaks_the_real_frames(js: str) -> None:
    assert '"roomserver.v1"' in js and "`bearer.${token}`" in js and "/ws/rooms/" in js
    pairs = re.findall(r'type: (?:[a-z]+ \? "([a-z_]+)" : )?"([a-z_]+)"', js)  # also `on ? "a" : "b"`
    sent = {t for pair in pairs for t in pair if t} - {"button", "submit"}  # el("button", {type})
    assert sent >= {"chat_message", "typing_start", "typing_stop", "reaction_add", "reaction_remove",
                    "socratic_query", "socratic_cancel", "resume"}
    assert sent <= CLIENT_TYPES, sent - CLIENT_TYPES
    handled = set(re.findall(r'case "([a-z_]+)":', js))
    assert handled >= {"welcome", "ack", "new_message", "user_joined", "user_left", "typing_status",
                       "reaction_updated", "socratic_response", "recovered", "error"}
    assert handled <= SERVER_TYPES, handled - SERVER_TYPES


def test_the_client_follows_the_close_code_rules(js: str) -> None:
    assert "code >= 4100 && code <= 4199" in js  # do not reconnect
    assert 'type: "resume", last_seq: this.seq' in js  # reconnect and resume
    assert "2 ** this.retries" in js  # with back-off
    assert 'name: "Ed25519"' in js and "indexedDB" in js and "sessionStorage" in js
    assert 'mode === "offline"' in js


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

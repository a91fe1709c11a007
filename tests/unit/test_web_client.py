"""The browser client's static files: small, self-contained, XSS-safe by construction, and
speaking the real REST endpoints, WebSocket frames and close-code rules."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from roomserver.api import web
from roomserver.app import all_endpoints
from roomserver.protocol import CLIENT_TYPES, SERVER_TYPES

STATIC = resources.files("roomserver").joinpath("static")


def read(name: str) -> str:
    return STATIC.joinpath(name).read_text("utf-8")


@pytest.fixture(scope="module")
def js() -> str:
    return read("app.js")


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

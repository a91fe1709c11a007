"""The local ledger's Host and Content-Type rules (roomserver.ledger.server), without a server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.ledger.server import allowed_host, host_name, is_json, is_loopback


@pytest.mark.parametrize(("header", "bound", "allowed"), [
    ("127.0.0.1:8899", "127.0.0.1", True),
    ("localhost", "127.0.0.1", True),
    ("LOCALHOST:1", "127.0.0.1", True),
    ("[::1]:8899", "::1", True),
    ("127.8.9.10:80", "127.0.0.1", True),
    ("10.0.0.5:8899", "10.0.0.5", True),  # the literal address it is bound to
    ("10.0.0.5:8899", "0.0.0.0", False),  # a wildcard bind names no host
    ("evil.example", "127.0.0.1", False),
    ("localhost.evil.example", "127.0.0.1", False),
    ("127.0.0.1:80x", "127.0.0.1", False),
    ("[::1", "127.0.0.1", False),
    ("", "127.0.0.1", False),
    (None, "127.0.0.1", False),
])
def test_allowed_hosts(header: str | None, bound: str, allowed: bool) -> None:
    assert allowed_host(header, bound) is allowed


def test_json_content_types() -> None:
    assert is_json("application/json") and is_json("Application/JSON; charset=utf-8")
    assert not any(map(is_json, ("text/plain", "application/jsonx", "", None)))


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "::1", "localhost", "127.1.2.3")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "", "10.0.0.1", "example.com")))


@given(st.text(max_size=80))
def test_any_host_header_parses_or_is_refused_without_raising(header: str) -> None:
    name = host_name(header)
    assert name is None or isinstance(name, str)
    allowed_host(header, "127.0.0.1")

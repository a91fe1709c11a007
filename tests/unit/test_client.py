"""roomserver.client without a server: the error body parser, close codes, Retry-After."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from roomserver.client import ApiError, Closed, reconnectable
from roomserver.client.rest import retry_after
from roomserver.errors import CloseCode, Forbidden, RateLimited


@given(st.integers(400, 599), st.binary(max_size=300))
def test_any_error_body_becomes_an_api_error_with_its_status(status: int, body: bytes) -> None:
    error = ApiError.from_body(status, body)
    assert error.status == status and isinstance(error.code, str) and isinstance(error.details, dict)


def test_the_servers_envelope_is_carried_as_it_came() -> None:
    refused = Forbidden("invite only", code="not_invited", details={"room": "r-1"})
    error = ApiError.from_body(403, orjson.dumps(refused.to_body()))
    assert (error.status, error.code, error.message, error.details) == (403, "not_invited", "invite only", {"room": "r-1"})
    limited = ApiError.from_body(429, orjson.dumps(RateLimited(retry_after=1.5).to_body()))
    assert (limited.code, limited.retry_after) == ("rate_limited", 1.5)
    assert ApiError.from_body(502, b"<html>bad gateway</html>").code == "http_502"


def test_close_codes_follow_the_protocols_reconnect_rule() -> None:
    assert [c for c in (1000, 1001, 1006, 1008, 1011, 1012, 4000, 4004, 4100, 4103, 4999) if reconnectable(c)] == [
        1001, 1006, 1011, 1012, 4000, 4004]
    kicked = Closed(4103)
    assert kicked.code is CloseCode.KICKED and not kicked.reconnectable and "KICKED" in str(kicked)
    assert Closed(4050).code == 4050 and Closed(4050).reconnectable


def test_retry_after_is_bounded_and_falls_back() -> None:
    assert [retry_after(v, 2.0) for v in ("1.5", None, "soon", "-3", "999")] == [1.5, 2.0, 2.0, 0.0, 60.0]

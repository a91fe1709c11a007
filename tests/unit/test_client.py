"""roomserver.client without a server: the error body parser, close codes, Retry-After, and
the socket's repair of durable events (dedup by seq, a gap filled by resume)."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import given
from hypothesis import strategies as st

from roomserver.client import ApiError, Closed, RoomSocket, reconnectable
from roomserver.client.rest import retry_after
from roomserver.errors import CloseCode, Forbidden, RateLimited
from roomserver.protocol import Message, NewMessage, Recovered


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


def _message(seq: int) -> NewMessage:
    return NewMessage(room_id="r-1", seq=seq, message=Message(id=f"m-{seq}", user_id="u-1", text=str(seq)))


async def test_durable_events_come_once_in_order_and_a_gap_asks_for_resume() -> None:
    socket = RoomSocket("http://127.0.0.1:1", "r-1", "tok")
    written: list[str] = []

    async def write(text: str) -> None:
        written.append(text)

    socket._write = write  # type: ignore[method-assign]
    socket._high = 4  # as after a welcome at seq 4
    for seq in (5, 5, 3, 7, 8):  # a duplicate, an old one, then a gap (6 missing)
        socket._take(_message(seq))
    await asyncio.sleep(0)
    assert [orjson.loads(w) for w in written] == [{"type": "resume", "last_seq": 5}]
    for seq in (6, 7, 8):  # the replay fills the gap, in order
        socket._take(_message(seq))
    socket._take(Recovered(complete=True, from_seq=5, to_seq=8))
    socket._take(_message(8))  # live delivery overlapping the replay
    got = [socket._events.get_nowait() for _ in range(socket._events.qsize())]
    assert [getattr(f, "seq", None) for f in got] == [5, 6, 7, 8, None]
    assert socket.seq == 8 and len(written) == 1

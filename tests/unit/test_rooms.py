"""Room-list cursors: every cursor round-trips, anything else is a typed 400."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from roomserver import errors
from roomserver.rooms import decode_cursor, encode_cursor


@given(st.datetimes(timezones=st.just(UTC)), st.uuids())
def test_cursors_round_trip(when: datetime, room_id: uuid.UUID) -> None:
    assert decode_cursor(encode_cursor(when, room_id)) == (when, room_id)


@given(st.one_of(st.text(max_size=80),
                 st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=30), st.none()), max_size=3)
                 .map(lambda v: base64.urlsafe_b64encode(orjson.dumps(v)).decode())))
def test_any_other_cursor_is_a_typed_400(cursor: str) -> None:
    try:
        decode_cursor(cursor)
    except errors.BadRequest as exc:
        assert exc.code == "invalid_cursor"

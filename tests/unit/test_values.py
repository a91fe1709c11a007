"""values: ids, tags and cursors parsed in one place, every bad input a typed error."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver import errors
from roomserver.values import (
    as_uuid,
    clean_tags,
    decode_keyset,
    decode_offset,
    encode_keyset,
    encode_offset,
    uuid_or_none,
)


@given(st.uuids())
def test_ids_parse_in_every_spelling(value: uuid.UUID) -> None:
    for spelling in (str(value), value.hex, str(value).upper(), f"{{{value}}}", value):
        assert as_uuid(spelling, "room_not_found", "room") == value
    assert uuid_or_none(str(value)) == value


@given(st.text(max_size=40).filter(lambda t: uuid_or_none(t) is None))
def test_anything_else_is_the_callers_typed_404(value: str) -> None:
    with pytest.raises(errors.NotFound) as caught:
        as_uuid(value, "message_not_found", "message")
    assert caught.value.code == "message_not_found" and caught.value.message == "no such message"


def test_tags_have_one_stored_form() -> None:
    assert clean_tags(["  Bio ", "bio", "Cell  Biology", "c++", "c#"], most=10) == [
        "bio", "cell biology", "c++", "c#"]
    assert clean_tags([], most=0) == []


@pytest.mark.parametrize("bad", ["", "   ", "-lead", "x" * 33, "semi;colon", "<b>"])
def test_a_bad_tag_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        clean_tags(["ok", bad], most=10)


def test_too_many_distinct_tags_are_refused_after_deduplication() -> None:
    assert clean_tags(["a", "A", "a "], most=1) == ["a"]
    with pytest.raises(ValueError, match="at most 2"):
        clean_tags(["a", "b", "c"], most=2)


@given(st.lists(st.text(max_size=40), max_size=12))
def test_cleaning_is_idempotent(tags: list[str]) -> None:
    try:
        cleaned = clean_tags(tags, most=12)
    except ValueError:
        return
    assert clean_tags(cleaned, most=12) == cleaned


@given(st.datetimes(timezones=st.just(UTC)), st.uuids())
def test_cursors_round_trip(when: datetime, room_id: uuid.UUID) -> None:
    assert decode_keyset(encode_keyset(when, room_id)) == (when, room_id)


@given(st.integers(0, 200))
def test_offset_cursors_round_trip(offset: int) -> None:
    assert decode_offset(encode_offset(offset), most=200) == offset


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=30)),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["before", "offset", "x"]), inner, max_size=2),
                     max_leaves=6)


@given(st.one_of(st.text(max_size=80),
                 _JSON.map(lambda v: base64.urlsafe_b64encode(orjson.dumps(v)).decode())))
def test_any_other_cursor_is_a_typed_400(cursor: str) -> None:
    for decode in (decode_keyset, lambda c: decode_offset(c, most=200)):
        try:
            decode(cursor)
        except errors.BadRequest as exc:
            assert exc.code == "invalid_cursor"


@pytest.mark.parametrize("offset", [-1, 201, True, 1.5, "3"])
def test_offsets_outside_the_range_are_refused(offset: object) -> None:
    with pytest.raises(errors.BadRequest):
        decode_offset(base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode(), most=200)


def test_a_naive_keyset_time_is_refused() -> None:
    naive = base64.urlsafe_b64encode(orjson.dumps({"before": ["2026-01-01T00:00:00", str(uuid.uuid4())]}))
    with pytest.raises(errors.BadRequest):
        decode_keyset(naive.decode())

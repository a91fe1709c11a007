"""The cluster broker's pure parts: channel tagging, node URLs, per-slot resubscription batches."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from roomserver.realtime.broker import (
    GLOBAL_NOTIFICATIONS,
    room_documents,
    room_messages,
    room_presence,
)
from roomserver.realtime.broker_cluster import ShardListener, _node_url, room_tag, tagged

room_ids = st.text(st.characters(blacklist_characters="{}:", blacklist_categories=("Cs",)), min_size=1)


@given(room_ids)
def test_a_rooms_channels_share_the_slot_of_its_tag(room_id: str) -> None:
    names = [tagged(f(room_id)) for f in (room_messages, room_presence, room_documents)]
    assert all(name.startswith(room_tag(room_id)) for name in names)
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert key_slot(names[0].encode()) == key_slot(f"presence:{room_tag(room_id)}:conns".encode())


def test_other_channels_keep_their_names() -> None:
    assert tagged(GLOBAL_NOTIFICATIONS) == GLOBAL_NOTIFICATIONS
    assert tagged("room:x:messages") == "{room:x}:messages"


def test_node_urls_keep_credentials_and_database() -> None:
    assert _node_url("redis://u:p@seed:7000/0", "10.0.0.2:7001") == "redis://u:p@10.0.0.2:7001/0"
    assert _node_url("rediss://seed:7000", "h:1") == "rediss://h:1"


def test_resubscription_is_one_command_per_slot() -> None:
    listener = ShardListener("redis://127.0.0.1:1/0", on_moved=lambda: None)
    channels = [tagged(room_messages(r)) for r in ("a", "b", "c")] + [tagged(room_presence("a"))]
    batches = listener._batches(channels)
    assert sorted(map(sorted, batches)) == sorted(map(sorted, [
        [tagged(room_messages("a")), tagged(room_presence("a"))],
        [tagged(room_messages("b"))], [tagged(room_messages("c"))]]))
    assert all(len({key_slot(c.encode()) for c in batch}) == 1 for batch in batches)

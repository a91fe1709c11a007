"""Broker channel names and the memory broker (one process's fan-out)."""

from __future__ import annotations

from roomserver.realtime import broker as b
from tests.fakes import Inbox


def test_channel_names() -> None:
    assert b.room_messages("r1") == "room:r1:messages"
    assert b.room_presence("r1") == "room:r1:presence"
    assert b.room_documents("r1") == "room:r1:documents"
    assert b.GLOBAL_NOTIFICATIONS == "global:notifications"


async def test_memory_broker_routes_to_the_subscribed_handler() -> None:
    broker = b.MemoryBroker()
    inbox = Inbox()
    await broker.subscribe("room:a:messages", inbox)
    await broker.publish("room:a:messages", "hello")
    await broker.publish("room:b:messages", b"elsewhere")
    await broker.unsubscribe("room:a:messages")
    await broker.publish("room:a:messages", b"after")
    assert inbox.items == [("room:a:messages", b"hello")]
    assert broker.healthy

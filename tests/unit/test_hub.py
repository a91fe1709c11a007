"""The hub with the memory broker and a fake history: one subscription per room, one encoded
str for every socket, slow consumers cut off, seq order, gap repair."""

from __future__ import annotations

import asyncio

from roomserver import protocol as p
from roomserver.errors import CloseCode
from roomserver.realtime.broker import MemoryBroker, room_messages
from roomserver.realtime.hub import Connection, Hub
from tests.fakes import History, Outlet, StuckOutlet, make_hub, wait_until


async def test_subscribes_once_per_room_and_shares_one_encoded_str() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)
    a, b = Outlet(), Outlet()
    ca, cb = Connection(a, "r1", "alice"), Connection(b, "r1", "bob")
    await hub.join(ca)
    await hub.join(cb)
    assert broker.channels == set(Hub.channels("r1"))
    await broker.publish(room_messages("r1"), history.append("r1"))
    typing = p.encode(p.TypingStatus(room_id="r1", user_id="alice", typing=True))
    hub.deliver("r1", typing, ephemeral=True)
    assert a.seqs() == b.seqs() == [1]
    assert a.frames[0] is b.frames[0]  # the broker's bytes decoded once for the room
    assert a.frames[1] is b.frames[1] is typing  # one object for every socket
    await hub.leave(ca)
    assert broker.channels == set(Hub.channels("r1"))
    await hub.leave(cb)
    await hub.leave(cb)  # idempotent
    assert broker.channels == frozenset()


async def test_slow_consumer_is_cut_off_and_never_delays_the_room() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history, max_backlog=50)
    stuck, normal = StuckOutlet(), [Outlet() for _ in range(3)]
    await hub.join(Connection(stuck, "r2", "slow"))
    for i, outlet in enumerate(normal):
        await hub.join(Connection(outlet, "r2", f"u{i}"))
    typing = p.encode(p.TypingStatus(room_id="r2", user_id="u0", typing=True))
    for _ in range(400):
        hub.deliver("r2", typing, ephemeral=True)  # dropped for the stuck socket, not counted
        await broker.publish(room_messages("r2"), history.append("r2", "x" * 2000))
    assert all(o.seqs() == list(range(1, 401)) for o in normal)
    await wait_until(lambda: stuck.closed is not None)
    assert stuck.closed == (CloseCode.SLOW_CONSUMER, "slow consumer")
    assert [c.outlet for c in hub.members("r2")] == normal
    await hub.close()


async def test_backlogged_socket_catches_up_in_order() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)

    class Bursty(Outlet):
        def __init__(self) -> None:
            super().__init__()
            self.full = True

        def write(self, text: str) -> bool:
            return not self.full and super().write(text)

    bursty = Bursty()
    await hub.join(Connection(bursty, "r3", "u"))
    for _ in range(20):
        await broker.publish(room_messages("r3"), history.append("r3"))
    bursty.full = False
    await wait_until(lambda: len(bursty.frames) == 20)
    for _ in range(5):
        await broker.publish(room_messages("r3"), history.append("r3"))
    assert bursty.seqs() == list(range(1, 26)) and bursty.closed is None


async def test_gap_is_repaired_from_history_before_later_events() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)
    out = Outlet()
    await hub.join(Connection(out, "r4", "u"))
    frames = [history.append("r4") for _ in range(6)]
    for i in (0, 1, 4, 1, 5, 2):  # seq 4 lost in transit, seq 3 late, seq 2 twice
        await broker.publish(room_messages("r4"), frames[i])
    await wait_until(lambda: len(out.frames) == 6)
    await asyncio.sleep(0.1)
    assert out.seqs() == [1, 2, 3, 4, 5, 6]
    assert history.fetches == [("r4", 3, 4)]  # the straggler 3 was waited for, not fetched


async def test_history_failure_closes_sockets_to_resume() -> None:
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history)
    out = Outlet()
    await hub.join(Connection(out, "r5", "u"))
    history.broken = True
    history.append("r5")
    await broker.publish(room_messages("r5"), history.append("r5"))
    await wait_until(lambda: out.closed is not None)
    assert out.closed is not None and out.closed[0] == CloseCode.INSUFFICIENT_STATE
    assert CloseCode(out.closed[0]).should_reconnect


async def test_metrics_count_deliveries_per_frame_and_slow_consumers() -> None:
    from roomserver.observe.metrics import Metrics

    metrics = Metrics()
    broker, history = MemoryBroker(), History()
    hub = make_hub(broker, history, max_backlog=5, metrics=metrics)
    stuck, fine = StuckOutlet(), Outlet()
    await hub.join(Connection(stuck, "r9", "slow"))
    await hub.join(Connection(fine, "r9", "ok"))
    for _ in range(10):
        await broker.publish(room_messages("r9"), history.append("r9"))
    await wait_until(lambda: stuck.closed is not None)
    assert metrics.slow_consumer_disconnects._value.get() == 1
    delivered = metrics.messages_delivered._value.get()
    assert delivered == 2 * 6 + 4  # both sockets until the stuck one is cut off at the sixth
    await hub.close()

"""Roomserver on a real Redis Cluster (three masters, three replicas): sharded fan-out across two
real `serve` nodes, one room's traffic on one shard, and a master failover under traffic.

The tests share one cluster and the two nodes; the failover test runs last (it moves a shard)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.errors import RateLimited
from roomserver.ratelimit import limiters
from roomserver.realtime.broker import redis_client
from roomserver.realtime.broker_cluster import ClusterBroker, room_tag, tagged
from roomserver.realtime.presence import RedisPresence
from roomserver.store.ports import free_port
from tests.clients import sign_in
from tests.redis_cluster_fixtures import ClusterNode, RedisClusterUnderTest
from tests.servers import run_process
from tests.test_multinode import _assert_gap_free, _send_many, _until_seq
from tests.ws_client import RoomClient, create_room

pytestmark = pytest.mark.slow


def _spublish_calls(cluster: RedisClusterUnderTest) -> dict[str, int]:
    counts = {}
    for node in cluster.nodes_alive():
        stat = node.info("commandstats").get("cmdstat_spublish", "calls=0")
        counts[node.address] = int(stat.split(",")[0].removeprefix("calls="))
    return counts


async def _until(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout}s: {check}")
        await asyncio.sleep(0.05)


async def test_cluster_broker_routes_each_room_to_its_shard(redis_cluster: RedisClusterUnderTest) -> None:
    broker = ClusterBroker(redis_cluster.url)
    await broker.start()
    try:
        assert broker.healthy
        got: list[tuple[str, bytes]] = []
        rooms = [f"r{i}" for i in range(12)]  # 12 rooms land on all three shards
        for room in rooms:
            await broker.subscribe(f"room:{room}:messages", lambda ch, data: got.append((ch, data)))
        assert len({broker.shard_of(f"room:{r}:messages") for r in rooms}) == 3
        for room in rooms:
            await broker.publish(f"room:{room}:messages", room)
        await _until(lambda: len(got) == len(rooms))
        assert sorted(got) == sorted((f"room:{r}:messages", r.encode()) for r in rooms)
        resubscribed: list[frozenset[str]] = []

        async def hook(channels: frozenset[str]) -> None:
            resubscribed.append(channels)

        broker.on_resubscribed(hook)
        for node in redis_cluster.nodes_alive():  # every listener loses its connection
            node.cli("CLIENT", "KILL", "TYPE", "pubsub")
        await _until(lambda: len(resubscribed) == 3 and broker.healthy)  # one per shard
        assert frozenset().union(*resubscribed) == {f"room:{r}:messages" for r in rooms}
        got.clear()
        for room in rooms:  # each shard's SSUBSCRIBEs went out per slot (one for all is CROSSSLOT)
            await broker.publish(f"room:{room}:messages", room)
        await _until(lambda: len(got) == len(rooms))
        owner = redis_cluster.owner(tagged("room:r0:messages"))
        assert broker.shard_of("room:r0:messages") == owner.address
        assert owner.cli("PUBSUB", "SHARDNUMSUB", "{room:r0}:messages").split() == ["{room:r0}:messages", "1"]
        await broker.unsubscribe("room:r0:messages")
        await _until(lambda: owner.cli("PUBSUB", "SHARDNUMSUB", "{room:r0}:messages").split()[1] == "0")
    finally:
        await broker.close()


async def test_cluster_broker_follows_a_slot_migration(redis_cluster: RedisClusterUnderTest) -> None:
    broker = ClusterBroker(redis_cluster.url)
    await broker.start()
    channel, got = "room:mig:messages", []
    moved: list[frozenset[str]] = []

    async def hook(channels: frozenset[str]) -> None:
        moved.append(channels)

    try:
        broker.on_resubscribed(hook)
        await broker.subscribe(channel, lambda ch, data: got.append(data))
        source = redis_cluster.owner(tagged(channel))
        target = next(n for n in redis_cluster.nodes_alive() if n.role() == "master" and n is not source)
        _move_slot(redis_cluster, int(source.cli("CLUSTER", "KEYSLOT", tagged(channel))), source, target)
        await _until(lambda: broker.shard_of(channel) == target.address and moved)
        assert channel in moved[0] and broker.moves >= 1
        await _until(lambda: target.cli("PUBSUB", "SHARDNUMSUB", tagged(channel)).split()[1] == "1")
        await broker.publish(channel, b"after the move")
        await _until(lambda: got == [b"after the move"])
    finally:
        await broker.close()


def _move_slot(cluster: RedisClusterUnderTest, slot: int, source: ClusterNode, target: ClusterNode) -> None:
    """Migrate one (key-less) slot from `source` to `target` the way `redis-cli --cluster reshard` does."""
    source_id, target_id = source.cli("CLUSTER", "MYID"), target.cli("CLUSTER", "MYID")
    assert target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id) == "OK"
    assert source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id) == "OK"
    assert source.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "10") == ""
    for node in (target, source):
        assert node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", target_id) == "OK"
    cluster.wait_ok()


async def test_presence_keys_of_a_room_share_a_slot(redis_cluster: RedisClusterUnderTest) -> None:
    client = redis_client(redis_cluster.url, cluster=True)
    try:
        store = RedisPresence(client, ttl=30)
        assert await store.add("p1", "u1", "node-a", {"user_id": "u1", "name": "ann"}) is True
        assert await store.add("p1", "u1", "node-b", {"user_id": "u1", "name": "ann"}) is False
        await store.refresh([("p1", "u1")], "node-a")
        assert await store.members("p1") == [{"user_id": "u1", "name": "ann"}]
        owner = redis_cluster.owner(room_tag("p1"))
        assert owner.cli("EXISTS", f"presence:{room_tag('p1')}:conns", f"presence:{room_tag('p1')}:info") == "2"
        assert await store.remove("p1", "u1", "node-a") is False
        assert await store.remove("p1", "u1", "node-b") is True
    finally:
        await client.aclose()


async def test_rate_limits_on_the_cluster_are_shared_and_hash_tagged(
        redis_cluster: RedisClusterUnderTest) -> None:
    clients = [redis_client(redis_cluster.nodes[i].address.join(("redis://", "/0")), cluster=True)
               for i in (0, 4)]  # two "nodes", seeded from different cluster nodes
    try:
        make = [limiters(client) for client in clients]
        rooms = [make[i]("tutor-room", 0.01, 5) for i in (0, 1)]
        admitted = 0
        for i in range(12):
            with contextlib.suppress(RateLimited):
                await rooms[i % 2].hit("room:lim1")
                admitted += 1
        assert admitted == 5  # one budget, wherever the check ran
        key = "ratelimit:tutor-room:{room:lim1}"
        assert redis_cluster.owner(room_tag("lim1")).cli("EXISTS", key) == "1"  # the room's shard
        users = make[0]("ws-chat", 1, 3)
        for user in ("u1", "u2", "u3"):
            await users.hit(user)  # one key each: any shard, no cross-slot command
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture(scope="module")
def nodes(database_url: str, redis_cluster: RedisClusterUnderTest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two `serve` nodes with REDIS_CLUSTER=1, REDIS_URL naming one cluster node each."""
    origin_port = free_port()
    logs = tmp_path_factory.mktemp("cluster-logs")
    base = {"DATABASE_URL": database_url, "REDIS_CLUSTER": "1",
            "PUBLIC_ORIGIN": f"http://127.0.0.1:{origin_port}",
            "PRESENCE_TTL_SECONDS": "3", "PRESENCE_LEAVE_GRACE_MS": "300",
            "WS_CHAT_PER_MINUTE": "1000000", "LOG_LEVEL": "info", "WS_PING_INTERVAL_SECONDS": "600"}
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, port, seed in (("a", origin_port, 0), ("b", free_port(), 1)):
            env = {**base, "REDIS_URL": f"redis://{redis_cluster.nodes[seed].address}/0",
                   "DATA_DIR": str(tmp_path_factory.mktemp(f"cluster-node-{name}"))}
            urls[name], _ = stack.enter_context(
                run_process(env, port=port, log=Path(logs / f"{name}.log")))
        yield urls


@pytest.fixture
async def api(nodes: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nodes["a"], timeout=30) as client:
        yield client


async def test_chat_across_nodes_touches_one_shard(api: httpx.AsyncClient, nodes: dict[str, str],
                                                    redis_cluster: RedisClusterUnderTest) -> None:
    users = [await sign_in(api) for _ in range(4)]
    room = await create_room(api, users[0])
    clients = [await RoomClient.open(nodes["ab"[i % 2]], u, room) for i, u in enumerate(users)]
    owner = redis_cluster.owner(room_tag(room))
    channel = tagged(f"room:{room}:messages")
    assert owner.cli("PUBSUB", "SHARDNUMSUB", channel).split()[1] == "2"  # one listener per node
    for other in redis_cluster.nodes_alive():
        if other is not owner:
            assert other.cli("PUBSUB", "SHARDNUMSUB", channel).split()[1] == "0"
    before = _spublish_calls(redis_cluster)
    start = clients[-1].frames[0]["seq"]
    sent = await asyncio.gather(*(_send_many(c, f"u{i}", 50) for i, c in enumerate(clients)))
    last = max(int(ack["seq"]) for acks in sent for ack in acks)  # type: ignore[call-overload]
    assert last == start + 200
    for client in clients:
        await _until_seq(client, last)
        _assert_gap_free(client, start + 1, last)
    after = _spublish_calls(redis_cluster)
    grew = {address: after[address] - before.get(address, 0) for address in after}
    assert grew[owner.address] >= 200, grew  # every message SPUBLISHed to the owning shard ...
    assert all(n == 0 for address, n in grew.items() if address != owner.address), grew  # ... only
    for client in clients:
        await client.close()


async def test_master_failover_under_traffic_loses_nothing(api: httpx.AsyncClient, nodes: dict[str, str],
                                                           redis_cluster: RedisClusterUnderTest) -> None:
    def failover(owner: ClusterNode, replica: ClusterNode) -> None:
        assert replica.cli("CLUSTER", "FAILOVER") == "OK"  # the replica takes over, gracefully

    await _under_traffic(api, nodes, redis_cluster, failover)


async def test_killed_master_under_traffic_loses_nothing(api: httpx.AsyncClient, nodes: dict[str, str],
                                                         redis_cluster: RedisClusterUnderTest) -> None:
    def kill(owner: ClusterNode, replica: ClusterNode) -> None:
        owner.kill()  # its replica is promoted after the node timeout (2 s)

    await _under_traffic(api, nodes, redis_cluster, kill)


async def _under_traffic(api: httpx.AsyncClient, nodes: dict[str, str], cluster: RedisClusterUnderTest,
                         act: Callable[[ClusterNode, ClusterNode], None]) -> None:
    """Two members on two nodes send 100 messages each while `act` moves their room's shard
    to its replica: every acknowledged message reaches both live sockets in order, a resume
    from before is complete, and both nodes listen on the new master."""
    alice, bob = await sign_in(api), await sign_in(api)
    room = await create_room(api, alice)
    a = await RoomClient.open(nodes["a"], alice, room)
    b = await RoomClient.open(nodes["b"], bob, room)
    start = a.frames[0]["seq"]
    owner = cluster.owner(room_tag(room))
    replica = cluster.replica_of(owner)

    async def paced(client: RoomClient, prefix: str) -> list[dict[str, object]]:
        acks = []
        for i in range(4):  # 4 bursts of 25, the failover in between
            acks += await _send_many(client, f"{prefix}{i}", 25)
            await asyncio.sleep(0.5)
        return acks

    senders = [asyncio.create_task(paced(c, p)) for c, p in ((a, "a"), (b, "b"))]
    await asyncio.sleep(0.6)
    act(owner, replica)
    await _until(lambda: replica.role() == "master", 30)
    acked = [ack for task in senders for ack in await task]
    assert len(acked) == 200
    last = max(int(ack["seq"]) for ack in acked)  # type: ignore[call-overload]
    assert last == start + 200
    for client in (a, b):  # the live sockets converge (the hub repairs from history)
        await _until_seq(client, last, timeout=30)
        _assert_gap_free(client, start + 1, last)
    again = await RoomClient.open(nodes["b"], bob, room, last_seq=start)  # and a resume is complete
    recovered = await again.wait_for(lambda f: f["type"] == "recovered")
    assert recovered["complete"] is True and recovered["to_seq"] >= last
    _assert_gap_free(again, start + 1, last)
    assert cluster.owner(room_tag(room)).address == replica.address
    channel = tagged(f"room:{room}:messages")
    await _until(lambda: replica.cli("PUBSUB", "SHARDNUMSUB", channel).split()[1] == "2", 10)
    more = await _send_many(a, "after", 5)
    await _until_seq(b, int(more[-1]["seq"]))  # type: ignore[call-overload]
    for client in (a, b, again):
        await client.close()

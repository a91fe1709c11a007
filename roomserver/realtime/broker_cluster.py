"""`ClusterBroker`: the `Broker` over a Redis Cluster (7+) with sharded pub/sub.

A channel's traffic touches only the shard that owns its hash slot: publishes are `SPUBLISH`
through redis-py's cluster client (which follows MOVED), and this node holds one supervised
listener per master (`ShardListener`: `RedisBroker`'s listener speaking `SSUBSCRIBE`), each
subscribed to the channels whose slots that master owns.

Channel names are hash-tagged on the way in (`room:ID:messages` -> `{room:ID}:messages`), so
all of one room's channels (and its presence and limit keys) share one slot; handlers and
`on_resubscribed` hooks see the names callers used.

Following the topology: a supervisor re-reads `CLUSTER SLOTS` (from the seed node, then any
node seen before) every `refresh_interval` seconds, at once when a shard listener drops, gets
a MOVED reply or an unrequested `sunsubscribe` (Redis sends one when a slot leaves the node),
and every `idle_refresh` seconds otherwise. A channel whose slot changed owner is subscribed on
the new owner's listener and dropped from the old one; listeners of nodes that are no longer
masters are closed; then the `on_resubscribed` hooks get the moved channels, so the hub repairs
from Postgres what was published in between (as after any outage).

Why not redis-py's own async `ClusterPubSub` (docs/decisions.md): its sharded pub/sub is
recent (8.x) and reconciles slot moves inside the client, but it does not report a dead
listener or tell us which channels were re-homed, and our repair depends on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from roomserver.errors import Unavailable
from roomserver.realtime.broker import Handler, RedisBroker, ResubscribedHook, _dispatch

log = logging.getLogger(__name__)

SLOTS = 16384


def tagged(channel: str) -> str:
    """The cluster name of a channel: `room:ID:rest` -> `{room:ID}:rest` (one slot per room)."""
    parts = channel.split(":", 2)
    if len(parts) == 3 and parts[0] == "room":
        return f"{{room:{parts[1]}}}:{parts[2]}"
    return channel


def room_tag(room_id: str) -> str:
    """The hash tag of one room's keys and channels: `{room:ID}`."""
    return f"{{room:{room_id}}}"


class ShardListener(RedisBroker):
    """Sharded pub/sub on one cluster node; reports replies that mean "the slot moved"."""

    SUBSCRIBE = "SSUBSCRIBE"
    UNSUBSCRIBE = "SUNSUBSCRIBE"
    MESSAGE = b"smessage"
    SUBSCRIBED = b"ssubscribe"

    def __init__(self, url: str, on_moved: Any, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._on_moved = on_moved

    def _batches(self, channels: list[str]) -> list[list[str]]:
        """One SSUBSCRIBE per hash slot: Redis refuses one naming channels of several (CROSSSLOT)."""
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        return list(by_slot.values())

    def _error_reply(self, exc: ResponseError) -> None:
        log.info("shard %s refused a subscription (%s); re-reading the slots", self._url, exc)
        self._on_moved()

    def _other_reply(self, kind: bytes, channel: str) -> None:
        if kind == b"sunsubscribe" and channel in self._handlers:
            self._on_moved()  # not asked for: the slot left this node


def _node_url(seed: str, address: str) -> str:
    """The seed URL with its host:port replaced (credentials and options kept)."""
    parts = urlsplit(seed)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, userinfo + address, parts.path, parts.query, ""))


def _address(host: Any, port: Any) -> str:
    return f"{host.decode() if isinstance(host, bytes) else host}:{int(port)}"


class ClusterBroker:
    """Sharded pub/sub over a Redis Cluster; `url` names any node (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        refresh_interval: float = 0.5,
        idle_refresh: float = 2.0,
        ping_interval: float = 5.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self._url = url
        self._seed = urlsplit(url).netloc.rsplit("@", 1)[-1]
        self._refresh = (refresh_interval, idle_refresh)
        self._listener_options: dict[str, Any] = {
            "ping_interval": ping_interval, "connect_timeout": connect_timeout}
        self._connect_timeout = connect_timeout
        self._handlers: dict[str, Handler] = {}  # caller's channel name -> handler
        self._names: dict[str, str] = {}  # tagged name -> caller's name
        self._where: dict[str, str] = {}  # caller's channel -> address of its listener
        self._shards: dict[str, ShardListener] = {}  # master address -> its listener
        self._owners: list[str] = []  # slot -> master address
        self._known: list[str] = [self._seed]  # every node address seen, the seed first
        self._hooks: list[ResubscribedHook] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pub: RedisCluster | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.outages = 0
        """Shard listener outages plus topology read failures (for metrics and tests)."""
        self.moves = 0
        """Channels re-homed after a slot migration or failover."""

    @property
    def healthy(self) -> bool:
        """The slot map is known and every master's listener is connected."""
        return bool(self._owners) and all(shard.healthy for shard in self._shards.values())

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def shard_of(self, channel: str) -> str:
        """The address of the master whose listener holds `channel` now (for tests)."""
        return self._where.get(channel) or self._owners[key_slot(tagged(channel).encode())]

    async def start(self) -> None:
        self._pub = RedisCluster.from_url(
            self._url, socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._connect_timeout)
        with contextlib.suppress(Unavailable):
            await self._reconcile()
        self._supervisor = asyncio.create_task(self._supervise(), name="redis-cluster-broker")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        for shard in list(self._shards.values()):
            await shard.close()
        self._shards.clear()
        if self._pub is not None:
            await self._pub.aclose()

    async def publish(self, channel: str, data: bytes | str) -> None:
        assert self._pub is not None, "start() first"
        try:
            await self._pub.spublish(tagged(channel), data)
        except (RedisError, OSError) as exc:
            self._wake.set()
            raise Unavailable(f"broker publish failed: {exc}", code="broker_unavailable") from None

    async def subscribe(self, channel: str, handler: Handler) -> None:
        async with self._lock:
            self._handlers[channel] = handler
            self._names[tagged(channel)] = channel
            if self._owners and channel not in self._where:
                await self._place(channel, self._owner(channel))

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            self._handlers.pop(channel, None)
            self._names.pop(tagged(channel), None)
            address = self._where.pop(channel, None)
            if address in self._shards:
                await self._shards[address].unsubscribe(tagged(channel))

    def on_resubscribed(self, hook: ResubscribedHook) -> None:
        self._hooks.append(hook)

    # ---- routing ----

    def _owner(self, channel: str) -> str:
        return self._owners[key_slot(tagged(channel).encode())]

    def _deliver(self, name: str, data: bytes) -> None:
        channel = self._names.get(name)
        handler = self._handlers.get(channel) if channel is not None else None
        if handler is not None:
            _dispatch(handler, channel, data)  # type: ignore[arg-type]

    async def _place(self, channel: str, address: str) -> None:
        await self._shards[address].subscribe(tagged(channel), self._deliver)
        self._where[channel] = address

    def _listener(self, address: str) -> ShardListener:
        shard = ShardListener(_node_url(self._url, address), self._wake.set, **self._listener_options)
        shard.on_resubscribed(self._shard_resubscribed)
        return shard

    async def _shard_resubscribed(self, names: frozenset[str]) -> None:
        """A shard's listener came back: its channels may have missed messages meanwhile."""
        self.outages += 1
        self._wake.set()
        await self._run_hooks(frozenset(self._names[n] for n in names if n in self._names))

    async def _run_hooks(self, channels: frozenset[str]) -> None:
        if not channels:
            return
        for hook in list(self._hooks):
            try:
                await hook(channels)
            except Exception:
                log.exception("on_resubscribed hook failed")

    # ---- following the topology ----

    async def _supervise(self) -> None:
        while True:
            fast, idle = self._refresh
            delay = fast if not self.healthy else idle
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.outages += 1
                log.warning("redis cluster topology unavailable: %r", exc)

    async def _reconcile(self) -> None:
        """Read the slot map; re-home channels whose slot changed owner; run the hooks for them."""
        owners = await self._read_slots()
        async with self._lock:
            self._owners = owners
            for address in set(owners) - set(self._shards):
                self._shards[address] = shard = self._listener(address)
                await shard.start()
            moved = [ch for ch in self._handlers if self._where.get(ch) != self._owner(ch)]
            for channel in moved:
                old = self._where.pop(channel, None)
                if old in self._shards:
                    with contextlib.suppress(RedisError, OSError):
                        await self._shards[old].unsubscribe(tagged(channel))
                await self._place(channel, self._owner(channel))
            for address in set(self._shards) - set(owners):
                await self._shards.pop(address).close()
        replaced = [ch for ch in moved if ch in self._handlers]
        if replaced:
            self.moves += len(replaced)
            log.info("redis cluster: %d channel(s) moved to their slots' new masters", len(replaced))
            await self._run_hooks(frozenset(replaced))

    async def _read_slots(self) -> list[str]:
        """slot -> master address, from the first node that answers `CLUSTER SLOTS`."""
        for address in list(self._known):
            client = aioredis.Redis.from_url(
                _node_url(self._url, address), socket_connect_timeout=1, socket_timeout=1)
            try:
                ranges = await client.execute_command("CLUSTER", "SLOTS")
            except (RedisError, OSError):
                continue
            finally:
                await client.aclose()
            owners = self._slot_map(ranges)
            if owners:
                return owners
        raise Unavailable("no Redis Cluster node answered CLUSTER SLOTS", code="broker_unavailable")

    def _slot_map(self, ranges: list[Any]) -> list[str]:
        owners = [""] * SLOTS
        for start, end, master, *replicas in ranges:
            address = _address(master[0], master[1])
            owners[int(start):int(end) + 1] = [address] * (int(end) - int(start) + 1)
            for node in (master, *replicas):
                if (seen := _address(node[0], node[1])) not in self._known:
                    self._known.append(seen)
        return owners if all(owners) else []

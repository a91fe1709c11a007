"""Cross-node publish/subscribe: the `Broker` Protocol, `MemoryBroker` and `RedisBroker`.

A broker holds at most ONE subscription per channel per process, with one handler; the hub
counts local listeners and subscribes/unsubscribes channels as rooms fill and empty.
Handlers are plain (sync) callables run on the listener's task: they must not block.

RedisBroker does not use broadcaster (0.3.1 breaks with redis-py 8 and dies silently on
`CLIENT KILL`). Its listener is supervised: it pings when idle, treats any connection
error or missing pong as death, reports `healthy=False`, reconnects with jittered
back-off, resubscribes every channel, then calls the `on_resubscribed` hooks so the
hub can repair what was published meanwhile (Redis pub/sub is fire-and-forget).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomserver.errors import Unavailable

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]
"""Called with (channel, payload) for each message; must not block or raise."""
ResubscribedHook = Callable[[frozenset[str]], Awaitable[None]]
"""Awaited with the channels resubscribed after an outage."""


def room_messages(room_id: str) -> str:
    return f"room:{room_id}:messages"


def room_presence(room_id: str) -> str:
    return f"room:{room_id}:presence"


def room_documents(room_id: str) -> str:
    return f"room:{room_id}:documents"


GLOBAL_NOTIFICATIONS = "global:notifications"



def redis_client(url: str, *, cluster: bool = False, timeout: float = 3.0, retries: int = 3) -> Any:
    """A command client that survives a Redis restart: stale pooled connections are pinged
    before use and a failed command is retried on a fresh connection (`retries` times, backing
    off; a cluster client twice as often, to ride out a failover). With `cluster`, a
    `RedisCluster` seeded by `url` (it follows MOVED and failovers; keys of one multi-key command
    or transaction must share a hash tag)."""
    if cluster:
        return RedisCluster.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries * 2),
        )
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )

class Broker(Protocol):
    @property
    def healthy(self) -> bool: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, channel: str, data: bytes | str) -> None:
        """Send to every node subscribed to `channel`. Raises Unavailable if it cannot."""
    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Route `channel` to `handler` (replacing any previous one) until unsubscribed."""
    async def unsubscribe(self, channel: str) -> None: ...
    def on_resubscribed(self, hook: ResubscribedHook) -> None: ...


def _dispatch(handler: Handler, channel: str, data: bytes) -> None:
    try:
        handler(channel, data)
    except Exception:  # one bad handler must not kill the listener
        log.exception("broker handler for %s failed", channel)


class MemoryBroker:
    """Single-node broker: publish calls the local handler directly. Always healthy."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._hooks: list[ResubscribedHook] = []

    @property
    def healthy(self) -> bool:
        return True

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    async def publish(self, channel: str, data: bytes | str) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            _dispatch(handler, channel, data.encode() if isinstance(data, str) else data)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel] = handler

    async def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)

    def on_resubscribed(self, hook: ResubscribedHook) -> None:
        self._hooks.append(hook)


class RedisBroker:
    """Redis pub/sub with a supervised listener and one pipelined publishing connection.

    The class attributes name the pub/sub dialect; `ShardListener` (realtime/broker_cluster.py)
    reuses this listener for sharded pub/sub on one cluster node.
    """

    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    MESSAGE = b"message"
    SUBSCRIBED = b"subscribe"

    def __init__(
        self,
        url: str,
        *,
        ping_interval: float = 5.0,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self._url = url
        self._ping_interval = ping_interval
        self._backoff = (backoff_min, backoff_max)
        self._connect_timeout = connect_timeout
        self._handlers: dict[str, Handler] = {}
        self._hooks: list[ResubscribedHook] = []
        self._healthy = False
        self._live = False  # the listener's connection accepts (UN)SUBSCRIBE commands
        self._pub: aioredis.Redis | None = None
        self._sub: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._pending: list[tuple[str, bytes | str, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._confirm: dict[str, list[asyncio.Future[None]]] = {}
        self.outages = 0
        """How many times the listener lost its connection (for metrics and tests)."""

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def _client(self, retries: int) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._connect_timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), retries),
        )

    async def start(self) -> None:
        """Start the listener and wait (up to the connect timeout) for its first connection."""
        self._pub = self._client(retries=1)
        self._sub = self._client(retries=0)  # errors must surface so we notice the outage
        self._listener = asyncio.create_task(self._supervise(), name="redis-broker-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._connect_timeout)

    async def close(self) -> None:
        for task in (self._listener, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._healthy = False
        await self._drop_pubsub()
        for client in (self._pub, self._sub):
            if client is not None:
                await client.aclose()

    # ---- publishing: callers' messages are batched into one pipeline per loop turn ----

    async def publish(self, channel: str, data: bytes | str) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((channel, data, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        assert self._pub is not None
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                pipe = self._pub.pipeline(transaction=False)
                for channel, data, _ in batch:
                    pipe.publish(channel, data)
                await pipe.execute()
            except (RedisError, OSError) as exc:
                error = Unavailable(f"broker publish failed: {exc}", code="broker_unavailable")
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)

    # ---- subscriptions ----

    async def subscribe(self, channel: str, handler: Handler) -> None:
        fresh = channel not in self._handlers
        self._handlers[channel] = handler
        if fresh and self._live:
            confirmed = asyncio.get_running_loop().create_future()
            self._confirm.setdefault(channel, []).append(confirmed)
            await self._send(self.SUBSCRIBE, channel)
            # wait until Redis confirms, so a publish right after cannot overtake it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(confirmed), self._connect_timeout)

    async def unsubscribe(self, channel: str) -> None:
        if self._handlers.pop(channel, None) is not None and self._live:
            await self._send(self.UNSUBSCRIBE, channel)

    def on_resubscribed(self, hook: ResubscribedHook) -> None:
        self._hooks.append(hook)

    async def _send(self, *command: str) -> None:
        """Write a command on the listener's connection; replies arrive in the listener."""
        try:
            await self._pubsub.connection.send_command(*command)
        except (RedisError, OSError):
            # the listener will see the same failure, reconnect and resubscribe everything
            log.warning("redis %s failed; the listener will resubscribe", command[0])

    # ---- the supervised listener ----

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            try:
                reconnect = self._connected.is_set()
                await self._connect_and_subscribe()
                attempt = 0
                if reconnect:
                    await self._run_hooks()
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means: down, back off, reconnect
                if self._healthy:
                    self.outages += 1
                    log.warning("redis subscriber lost: %r", exc)
            self._healthy = self._live = False
            await self._drop_pubsub()
            attempt += 1
            low, high = self._backoff
            delay = min(high, low * 2 ** min(attempt, 16))
            await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _connect_and_subscribe(self) -> None:
        assert self._sub is not None
        self._pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.connect()
        # no await between the snapshot and `_live`: later subscribe() calls send their own
        channels = list(self._handlers)
        self._live = True
        await self._pubsub.connection.send_command("PING")
        for group in self._batches(channels):
            await self._pubsub.connection.send_command(self.SUBSCRIBE, *group)
        self._healthy = True
        self._connected.set()

    async def _listen(self) -> None:
        conn = self._pubsub.connection
        awaiting_pong = False
        while True:
            # push_request=True: without it redis-py 8 never returns pub/sub replies here
            try:
                response = await conn.read_response(
                    timeout=self._ping_interval, disconnect_on_error=False, push_request=True
                )
            except ResponseError as exc:  # an error reply to one command; the link is fine
                self._error_reply(exc)
                continue
            if response is None:
                if awaiting_pong:
                    raise ConnectionError("redis did not answer a ping")
                await conn.send_command("PING")
                awaiting_pong = True
                continue
            awaiting_pong = False
            if not (isinstance(response, list) and len(response) == 3):
                continue
            kind, channel = response[0], response[1].decode()
            if kind == self.MESSAGE:
                handler = self._handlers.get(channel)
                if handler is not None:
                    _dispatch(handler, channel, response[2])
            elif kind == self.SUBSCRIBED:
                for future in self._confirm.pop(channel, ()):
                    if not future.done():
                        future.set_result(None)
            else:
                self._other_reply(kind, channel)

    def _batches(self, channels: list[str]) -> list[list[str]]:
        """The channels to resubscribe, grouped into one command each."""
        return [channels] if channels else []

    def _error_reply(self, exc: ResponseError) -> None:
        """An error answer to a (un)subscribe on a live link: plain Redis has none to expect."""
        raise exc

    def _other_reply(self, kind: bytes, channel: str) -> None:
        """Any other pub/sub reply (an unsubscribe confirmation): nothing to do here."""

    async def _run_hooks(self) -> None:
        channels = frozenset(self._handlers)
        for hook in list(self._hooks):
            try:
                await hook(channels)
            except Exception:
                log.exception("on_resubscribed hook failed")

    async def _drop_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.connection.disconnect()
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None

"""The one Solana RPC reader: every request the server makes goes through a `ChainReader`.

One timeout (`SOLANA_RPC_TIMEOUT_SECONDS`, default 10 s) bounds each request; one error
mapping turns every failure to get an answer into `Unavailable` with the reader's code
("gating_unavailable" for gating, "nft_ledger_unavailable" for minting) and a fixed `reason`:

    timeout       no answer within the timeout
    unreachable   the connection failed (refused, reset, DNS)
    rpc_error     the node answered with a JSON-RPC error
    bad_answer    an answer that does not parse (also pyo3 PanicException from solders)

A transaction the ledger refuses (`send`) is `BadRequest("transaction_failed")` with reason
"preflight_failed" or "expired". No error text reaches a client: a node's JSON-RPC error
message is logged here at warning level; transport errors are logged by type only (their text
can name the RPC URL, whose query string often holds a provider key).

Siblings made by `with_code` share the client, the timeout and the health flag, so gating and
minting report one RPC state to /health. Commitment is always `confirmed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException, TransactionExpiredBlockheightExceededError
from solana.rpc.models import TxOpts
from solders.account import Account
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from roomserver.errors import BadRequest, Unavailable
from roomserver.observe.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 100  # getMultipleAccounts takes at most 100 keys
Reason = Literal["timeout", "unreachable", "rpc_error", "bad_answer"]


@dataclass
class RpcHealth:
    """The last known RPC state, shared by every sibling reader."""

    healthy: bool = True


def _is_control_flow(exc: BaseException) -> bool:
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError))


def reason_of(exc: BaseException) -> Reason:
    """The category of a failed request, from the exception (or the one solana-py wrapped).
    HTTP errors are recognised by class name: solana-py ships its own copy of httpx."""
    cause = exc.__cause__ if isinstance(exc, SolanaRpcException) and exc.__cause__ else exc
    names = {k.__name__ for k in type(cause).__mro__}
    if isinstance(cause, TimeoutError) or "TimeoutException" in names:
        return "timeout"
    if isinstance(cause, OSError) or "TransportError" in names:
        return "unreachable"
    if isinstance(cause, RPCException):
        return "rpc_error"
    return "bad_answer"


def method_name(request: object) -> str:
    """The solana-py client method a request coroutine is of, in JSON-RPC's camelCase
    (`get_balance` -> `getBalance`): a small fixed set, fit for a metric label."""
    name = getattr(request, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        return "other"
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class ChainReader:
    """Requests to one Solana RPC, bounded by one timeout, failures typed by one mapping."""

    def __init__(self, client: AsyncClient, *, timeout_seconds: float = 10.0,
                 unavailable_code: str = "chain_unavailable", health: RpcHealth | None = None,
                 metrics: Metrics | None = None):
        if timeout_seconds <= 0:
            raise ValueError("the RPC timeout must be positive")
        self.client, self.timeout, self.code = client, timeout_seconds, unavailable_code
        self._health = health or RpcHealth()
        self._metrics = metrics or Metrics.unexposed()

    def with_code(self, unavailable_code: str) -> ChainReader:
        """A sibling raising `unavailable_code`, sharing client, timeout, health and metrics."""
        return ChainReader(self.client, timeout_seconds=self.timeout, unavailable_code=unavailable_code,
                           health=self._health, metrics=self._metrics)

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    def unavailable(self, exc: BaseException) -> Unavailable:
        """The typed error for a failed request (its text logged, not returned)."""
        reason = reason_of(exc)
        # only a node's JSON-RPC error text is logged: transport errors can name the URL (keys)
        text = str(exc)[:300] if isinstance(exc, RPCException) else ""
        log.warning("Solana RPC request failed (%s): %s %s", reason, type(exc).__name__, text)
        return Unavailable("the Solana RPC cannot be reached", code=self.code, details={"reason": reason})

    async def call(self, request: Awaitable[T], *, seconds: float | None = None) -> T:
        """Await one RPC request (bounded by `seconds`, default the reader's timeout); any
        failure to get an answer raises `Unavailable`. Timed by client method (metrics)."""
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(request, seconds or self.timeout)
        except BaseException as exc:  # also pyo3 PanicException (a BaseException) from a malformed answer
            if _is_control_flow(exc):
                raise
            self._health.healthy = False
            raise self.unavailable(exc) from exc
        finally:
            self._metrics.rpc_duration.labels(method_name(request)).observe(time.perf_counter() - started)
        self._health.healthy = True
        return result

    async def accounts(self, keys: Sequence[Pubkey]) -> list[Account | None]:
        """The accounts at `keys`, in order (None where absent), in batches of 100."""
        out: list[Account | None] = []
        for start in range(0, len(keys), MAX_BATCH):
            chunk = list(keys[start : start + MAX_BATCH])
            out.extend((await self.call(self.client.get_multiple_accounts(chunk, Confirmed))).value)
        return out

    async def balance(self, key: Pubkey) -> int:
        """Lamports held by `key`."""
        return (await self.call(self.client.get_balance(key, Confirmed))).value

    async def health(self) -> bool:
        """Probe getHealth; records and returns the answer, never raises for an unreachable node."""
        try:
            healthy = bool(await self.call(self.client.is_connected()))
        except Unavailable:
            return False
        self._health.healthy = healthy
        return healthy

    async def send(self, tx: VersionedTransaction, *, confirm_timeout: float) -> str:
        """Send with preflight and wait for `confirmed`; the signature. Raises
        BadRequest("transaction_failed") when the ledger refuses it, Unavailable otherwise."""
        opts = TxOpts(skip_confirmation=False, preflight_commitment=Confirmed)
        try:
            answer = await self.call(self.client.send_transaction(tx, opts=opts),
                                     seconds=self.timeout + confirm_timeout)
        except Unavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, (RPCException, TransactionExpiredBlockheightExceededError)):
                self._health.healthy = True  # the node answered: it refused the transaction
                reason = "expired" if isinstance(cause, TransactionExpiredBlockheightExceededError) else "preflight_failed"
                raise BadRequest("the ledger refused the mint transaction", code="transaction_failed",
                                 details={"reason": reason}) from None
            raise
        return str(answer.value)

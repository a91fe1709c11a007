"""The gatekeeper without a ledger: an unreachable RPC is a typed 503, and the memory cache expires."""

from __future__ import annotations

from decimal import Decimal

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from roomserver.chain.rpc import ChainReader
from roomserver.errors import Unavailable
from roomserver.gating.gatekeeper import Decision, Gate, Gatekeeper, MemoryGateCache
from roomserver.store.ports import free_port
from tests.fakes import FakeClock


async def test_ledger_down_raises_gating_unavailable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as dead:
        keeper = Gatekeeper(ChainReader(dead, timeout_seconds=5), MemoryGateCache())
        with pytest.raises(Unavailable) as caught:
            await keeper.check(str(Keypair().pubkey()), Gate("token", str(Keypair().pubkey()), Decimal(1)))
        assert caught.value.code == "gating_unavailable" and caught.value.status == 503
        assert caught.value.details == {"reason": "unreachable"}, "a fixed reason, never the node's text"
        assert keeper.rpc_healthy is False
        with pytest.raises(Unavailable):
            await keeper.validate_gate(Gate("nft", str(Keypair().pubkey())))


async def test_memory_cache_expires() -> None:
    clock = FakeClock()
    cache = MemoryGateCache(clock)
    await cache.set("k", Decision(True, None, "ok"), 5)
    assert (await cache.get("k")) == Decision(True, None, "ok")
    clock.now += 5
    assert await cache.get("k") is None

"""The chain reader without a node: an unreachable RPC is a typed `unavailable`, and unhealthy."""

from __future__ import annotations

import pytest
from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey

from roomserver.chain.rpc import ChainReader
from roomserver.errors import Unavailable
from roomserver.store.ports import free_port


async def test_an_unreachable_node_is_unavailable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as dead:
        reader = ChainReader(dead)
        with pytest.raises(Unavailable) as caught:
            await reader.accounts([Pubkey.default()])
        assert caught.value.details == {"reason": "unreachable"}
        assert await reader.health() is False

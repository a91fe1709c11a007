"""A real ledger process (dev mode) and a real solana AsyncClient, shared by the ledger and
gating tests. A ledger that cannot start fails the tests loudly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from roomserver.chain import dev as solana_dev
from roomserver.ledger.process import LedgerProcess, start_ledger


@pytest.fixture(scope="session")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerProcess]:
    data_dir: Path = tmp_path_factory.mktemp("ledger")
    with start_ledger(data_dir, dev=True) as process:
        yield process


@pytest.fixture(scope="session")
async def rpc(ledger: LedgerProcess) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(ledger.url) as client:
        yield client


@pytest.fixture(scope="session")
async def payer(rpc: AsyncClient) -> Keypair:
    """Funded; the mint and collection authority in tests."""
    keypair = Keypair()
    await solana_dev.airdrop(rpc, keypair.pubkey(), 100 * solana_dev.LAMPORTS_PER_SOL)
    return keypair

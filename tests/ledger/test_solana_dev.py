"""The dev CLI against the real ledger: it prints the addresses it made, and they are real."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey

from roomserver.chain import dev as solana_dev
from roomserver.ledger.process import LedgerProcess


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, str]:
    code = await asyncio.to_thread(solana_dev.main, list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return dict(line.split("=", 1) for line in out.splitlines())


async def test_cli_makes_a_token_and_an_nft_collection(
    ledger: LedgerProcess, rpc: AsyncClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--url", ledger.url, "--keypair", str(tmp_path / "payer.json")]
    alice = (await cli(capsys, *base, "new-wallet", str(tmp_path / "alice.json")))["wallet"]
    mint = (await cli(capsys, *base, "create-mint", "--decimals", "2", "--token-2022"))["mint"]
    account = (await cli(capsys, *base, "mint", mint, alice, "12.5"))["token_account"]
    balance = (await rpc.get_token_account_balance(Pubkey.from_string(account))).value
    assert balance.ui_amount_string == "12.5"
    collection = (await cli(capsys, *base, "create-collection", "--name", "Club"))["collection"]
    nft = (await cli(capsys, *base, "mint-nft", collection, alice, "--name", "Club #1"))["nft"]
    bob = (await cli(capsys, *base, "new-wallet", str(tmp_path / "bob.json")))["wallet"]
    await cli(capsys, *base, "transfer", nft, bob, "1", "--from-keypair", str(tmp_path / "alice.json"))
    from solana.rpc.models import TokenAccountOpts

    held = (await rpc.get_token_accounts_by_owner_json_parsed(Pubkey.from_string(bob), TokenAccountOpts(mint=Pubkey.from_string(nft)))).value
    assert held[0].account.data.parsed["info"]["tokenAmount"]["amount"] == "1"


async def test_cli_refuses_an_amount_finer_than_the_decimals(
    ledger: LedgerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--url", ledger.url, "--keypair", str(tmp_path / "payer.json")]
    mint = (await cli(capsys, *base, "create-mint", "--decimals", "0"))["mint"]
    code = await asyncio.to_thread(solana_dev.main, [*base, "mint", mint, mint, "0.5"])
    assert code == 2 and "at most 0 decimals" in capsys.readouterr().err

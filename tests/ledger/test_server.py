"""The ledger over HTTP: standard wire formats for the real client, errors, restart."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.models import TokenAccountOpts
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams
from solders.system_program import transfer as sol_transfer
from solders.transaction import Transaction

from roomserver.chain import dev
from roomserver.chain.spl_token import TOKEN_2022_PROGRAM, TOKEN_PROGRAM
from roomserver.ledger.process import LedgerProcess, start_ledger


async def post(url: str, body: object | bytes) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        if isinstance(body, bytes):
            return await http.post(url, content=body, headers={"Content-Type": "application/json"})
        return await http.post(url, json=body)


async def test_unknown_method_gets_the_standard_error(ledger: LedgerProcess) -> None:
    answer = (await post(ledger.url, {"jsonrpc": "2.0", "id": 7, "method": "getNothing"})).json()
    assert answer == {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": 7}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        ({"jsonrpc": "1.0", "id": 1, "method": "getSlot"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": {"a": 1}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": ["not-a-key"]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": []}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "requestAirdrop", "params": [str(Keypair().pubkey()), -5]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": ["!!", {"encoding": "base64"}]}, -32602),
        ([], -32600),
    ],
)
async def test_bad_requests_get_typed_jsonrpc_errors(ledger: LedgerProcess, body: object, code: int) -> None:
    response = await post(ledger.url, body)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == code


async def test_batch_answers_each_request(ledger: LedgerProcess) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": m} for i, m in enumerate(["getHealth", "nope"])]
    answers = (await post(ledger.url, batch)).json()
    assert answers[0]["result"] == "ok" and answers[1]["error"]["code"] == -32601


async def test_oversized_body_is_refused_before_it_is_read(ledger: LedgerProcess) -> None:
    host, port = ledger.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"413"


async def test_rpc_errors_reach_the_client_as_typed_exceptions(rpc: AsyncClient) -> None:
    with pytest.raises(RPCException):
        await rpc.get_token_account_balance(Keypair().pubkey())


async def test_failed_preflight_is_a_typed_error_and_changes_nothing(rpc: AsyncClient, payer: Keypair) -> None:
    poor = Keypair()
    await dev.airdrop(rpc, poor.pubkey(), 10**7)
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    ix = sol_transfer(TransferParams(from_pubkey=poor.pubkey(), to_pubkey=payer.pubkey(), lamports=10**12))
    tx = Transaction([poor], Message([ix], poor.pubkey()), blockhash)
    with pytest.raises(RPCException) as caught:
        await rpc.send_transaction(tx)
    assert "InstructionError" in str(caught.value)
    assert (await rpc.get_balance(poor.pubkey())).value == 10**7


async def test_stale_blockhash_is_refused(rpc: AsyncClient, payer: Keypair) -> None:
    ix = sol_transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10**6))
    tx = Transaction([payer], Message([ix], payer.pubkey()), Hash.new_unique())
    with pytest.raises(RPCException) as caught:
        await rpc.send_transaction(tx)
    assert "BlockhashNotFound" in str(caught.value)


async def test_token_queries_in_base64_and_json_parsed(rpc: AsyncClient, payer: Keypair) -> None:
    wallet = Keypair().pubkey()
    mint = await dev.create_mint(rpc, payer, 2, token_2022=True)
    ata = await dev.mint_to(rpc, payer, mint, wallet, 12_345)
    balance = (await rpc.get_token_account_balance(ata)).value
    assert (balance.amount, balance.decimals, balance.ui_amount_string) == ("12345", 2, "123.45")
    parsed = (await rpc.get_token_accounts_by_owner_json_parsed(wallet, TokenAccountOpts(mint=mint))).value
    info = parsed[0].account.data.parsed["info"]
    assert info["tokenAmount"]["uiAmountString"] == "123.45" and info["owner"] == str(wallet)
    assert {"extension": "immutableOwner"} in info["extensions"]
    raw = (await rpc.get_token_accounts_by_owner(wallet, TokenAccountOpts(program_id=Pubkey.from_string(TOKEN_2022_PROGRAM)))).value
    assert [a.pubkey for a in raw] == [ata]
    none = (await rpc.get_token_accounts_by_owner(wallet, TokenAccountOpts(program_id=Pubkey.from_string(TOKEN_PROGRAM)))).value
    assert none == []
    mints = (await rpc.get_multiple_accounts_json_parsed([mint, Keypair().pubkey()])).value
    assert mints[0].data.parsed["info"]["supply"] == "12345" and mints[1] is None


async def test_program_accounts_filters(rpc: AsyncClient, payer: Keypair) -> None:
    from solana.rpc.models import MemcmpOpts

    wallet = Keypair().pubkey()
    mint = await dev.create_mint(rpc, payer, 0)
    await dev.mint_to(rpc, payer, mint, wallet, 3)
    found = (await rpc.get_program_accounts(
        Pubkey.from_string(TOKEN_PROGRAM),
        filters=[165, MemcmpOpts(offset=32, bytes=str(wallet))],
    )).value
    assert len(found) == 1 and bytes(found[0].account.data)[:32] == bytes(mint)


async def test_raw_account_write_needs_dev_mode(ledger: LedgerProcess, rpc: AsyncClient) -> None:
    key = Keypair().pubkey()
    spec = {"lamports": 1_000_000, "data": [base64.b64encode(b"hello").decode(), "base64"], "owner": TOKEN_PROGRAM}
    answer = (await post(ledger.url, {"jsonrpc": "2.0", "id": 1, "method": "ledger_setAccount", "params": [str(key), spec]})).json()
    assert answer["result"] is None
    account = (await rpc.get_account_info(key)).value
    assert account is not None and bytes(account.data) == b"hello"


async def test_restart_keeps_every_account(tmp_path: Path) -> None:
    def start() -> LedgerProcess:
        return start_ledger(tmp_path)

    first = await asyncio.to_thread(start)
    try:
        async with AsyncClient(first.url) as client:
            payer = Keypair()
            await dev.airdrop(client, payer.pubkey(), 10**10)
            collection = await dev.create_collection(client, payer, "Club", "CLB", "u")
            nft = await dev.mint_nft(client, payer, collection, Keypair().pubkey(), "One", "ONE", "u")
            mint = await dev.create_mint(client, payer, 6)
            await dev.mint_to(client, payer, mint, Keypair().pubkey(), 5)
            before = {p: sorted((str(k.pubkey), bytes(k.account.data), k.account.lamports) for k in
                                (await client.get_program_accounts(Pubkey.from_string(p))).value)
                      for p in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)}
            balance = (await client.get_balance(payer.pubkey())).value
            refused = await post(first.url, {"jsonrpc": "2.0", "id": 1, "method": "ledger_setAccount", "params": []})
            assert refused.json()["error"]["code"] == -32601  # not a dev ledger
    finally:
        await asyncio.to_thread(first.stop)
    second = await asyncio.to_thread(start)
    try:
        async with AsyncClient(second.url) as client:
            after = {p: sorted((str(k.pubkey), bytes(k.account.data), k.account.lamports) for k in
                               (await client.get_program_accounts(Pubkey.from_string(p))).value)
                     for p in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)}
            assert after == before and len(after[TOKEN_2022_PROGRAM]) == 3
            assert (await client.get_balance(payer.pubkey())).value == balance
            assert (await client.get_account_info(nft)).value is not None
            # and it keeps working after the replay
            await dev.mint_to(client, payer, mint, Keypair().pubkey(), 1)
    finally:
        await asyncio.to_thread(second.stop)


def test_replay_survives_a_torn_last_line(tmp_path: Path) -> None:
    from roomserver.ledger.state import LOG_NAME, Ledger

    wallet = Keypair().pubkey()
    first = Ledger(tmp_path)
    first.airdrop(wallet, 5_000_000)
    first.close()
    with (tmp_path / LOG_NAME).open("a") as log:
        log.write('{"op":"airdrop","pubk')  # a crash mid-write
    second = Ledger(tmp_path)
    assert second.vm.get_balance(wallet) == 5_000_000
    second.airdrop(wallet, 1)
    second.close()
    third = Ledger(tmp_path)
    assert third.vm.get_balance(wallet) == 5_000_001
    third.close()


def test_the_ledger_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """`serve` SIGKILLed must not leave its ledger child running."""
    import os
    import signal
    import time

    script = ("import sys, time; from pathlib import Path; "
              "from roomserver.ledger.process import start_ledger; "
              "ledger = start_ledger(Path(sys.argv[1])); print(ledger.process.pid, flush=True); "
              "time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "l")],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as stat:
            if stat.read().split()[2] == "Z":
                return  # exited; only waiting to be reaped by init
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the ledger outlived its SIGKILLed parent")


# -- browsers are kept out --------------------------------------------------------------


async def test_a_cross_site_form_post_is_refused_and_does_nothing(ledger: LedgerProcess, rpc: AsyncClient) -> None:
    target = Keypair().pubkey()
    body = f'{{"jsonrpc":"2.0","id":1,"method":"requestAirdrop","params":["{target}",1000000000]}}'
    async with httpx.AsyncClient() as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {} if content_type is None else {"Content-Type": content_type}
            refused = await http.post(ledger.url, content=body, headers=headers)
            assert refused.status_code == 415, content_type
            assert refused.json()["error"]["code"] == -32600
        ok = await http.post(ledger.url, content=body, headers={"Content-Type": "application/json; charset=utf-8"})
        assert ok.status_code == 200 and "result" in ok.json()
    await rpc.confirm_transaction(Signature.from_string(ok.json()["result"]))
    assert (await rpc.get_balance(target)).value == 1_000_000_000, "only the JSON request ran"


async def test_a_foreign_host_header_is_refused(ledger: LedgerProcess) -> None:
    port = ledger.url.rsplit(":", 1)[1]
    health = {"jsonrpc": "2.0", "id": 1, "method": "getHealth"}
    async with httpx.AsyncClient() as http:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "10.1.2.3", "[::1]x"):
            refused = await http.post(ledger.url, json=health, headers={"Host": host})
            assert refused.status_code == 403, host
            assert (await http.get(f"{ledger.url}/health", headers={"Host": host})).status_code == 403
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
            answer = await http.post(ledger.url, json=health, headers={"Host": host})
            assert answer.status_code == 200 and answer.json()["result"] == "ok", host

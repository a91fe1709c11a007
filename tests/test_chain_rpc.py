"""The one chain reader against a misbehaving JSON-RPC node (a real HTTP server on loopback
whose every error names a secret), then the app on top of it: no node text reaches a client."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from roomserver.chain.rpc import ChainReader
from roomserver.config import Settings
from roomserver.errors import BadRequest, Unavailable
from tests.clients import sign_in
from tests.servers import run_app

SECRET = "sk-provider-secret-7f3a"  # what a provider's error text may carry (keys, URLs)
SLOW = {"getBalance"}  # methods the node answers only after 3 s


class _Node(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["method"] in SLOW:
            time.sleep(3)
        message = f"Transaction simulation failed: {SECRET} at https://rpc.example/?api-key={SECRET}"
        answer = {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32603, "message": message}}
        if request["method"] == "getHealth":
            answer = {"jsonrpc": "2.0", "id": request["id"], "result": "ok"}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Node)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def client(node: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(node) as c:
        yield c


def assert_no_secret(error: BaseException) -> None:
    assert SECRET not in str(error) and SECRET not in json.dumps(getattr(error, "details", {}))


async def test_a_node_error_is_typed_and_its_text_stays_in_the_log(
        client: AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    reader = ChainReader(client, unavailable_code="gating_unavailable")
    with pytest.raises(Unavailable) as caught:
        await reader.accounts([Pubkey.default()])
    assert (caught.value.code, caught.value.status, caught.value.details) == (
        "gating_unavailable", 503, {"reason": "rpc_error"})
    assert_no_secret(caught.value)
    assert SECRET in caplog.text, "operators still see what the node said"
    assert reader.healthy is False
    sibling = reader.with_code("nft_ledger_unavailable")
    assert sibling.healthy is False and await sibling.health() is True and reader.healthy is True
    with pytest.raises(Unavailable) as minted:
        await sibling.accounts([Pubkey.default()])
    assert minted.value.code == "nft_ledger_unavailable"


async def test_one_timeout_bounds_every_request(client: AsyncClient) -> None:
    reader = ChainReader(client, timeout_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await reader.balance(Pubkey.default())
    assert time.monotonic() - started < 2
    assert caught.value.details == {"reason": "timeout"}


async def test_a_refused_transaction_is_transaction_failed_without_the_node_text(client: AsyncClient) -> None:
    payer = Keypair()
    message = Message.new_with_blockhash(
        [transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.default(), lamports=1))],
        payer.pubkey(), Hash.default())
    reader = ChainReader(client)
    with pytest.raises(BadRequest) as caught:
        await reader.send(VersionedTransaction(message, [payer]), confirm_timeout=1)
    assert (caught.value.code, caught.value.details) == ("transaction_failed", {"reason": "preflight_failed"})
    assert_no_secret(caught.value)
    assert reader.healthy is True, "the node answered"


# -- the app over the same node ---------------------------------------------------------


@pytest.fixture(scope="module")
async def app_url(settings: Settings, node: str) -> AsyncIterator[str]:
    async with run_app(dataclasses.replace(settings, solana_rpc_url=node)) as url:
        yield url


async def test_clients_get_typed_errors_without_the_node_text(app_url: str) -> None:
    async with httpx.AsyncClient(base_url=app_url, timeout=30) as http:
        owner = await sign_in(http)
        gated = await http.post("/api/v1/rooms", headers=owner.headers, json={
            "name": "Gated", "room_type": "token_gated", "access_token_mint": str(Keypair().pubkey()),
            "min_token_amount": 1})
        assert gated.status_code == 503, gated.text
        assert gated.json()["error"]["code"] == "gating_unavailable"
        assert gated.json()["error"]["details"] == {"reason": "rpc_error"}
        room = await http.post("/api/v1/rooms", headers=owner.headers,
                               json={"name": "Open", "room_type": "public"})
        minted = await http.post("/api/v1/nft/mint-room", headers=owner.headers,
                                 json={"room_id": room.json()["id"]})
        assert minted.status_code == 503, minted.text
        assert minted.json()["error"]["code"] == "nft_ledger_unavailable"
        collections = await http.get("/api/v1/nft/collections")
        for answer in (gated, minted, collections):
            assert SECRET not in answer.text and "api-key" not in answer.text

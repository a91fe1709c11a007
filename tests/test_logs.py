"""A real node's log (`python -m roomserver serve` under uvicorn, stderr not a terminal, so
JSON by default, at debug level): every line is one JSON object, requests and sockets carry
their ids, and no bearer token, signature or operator token it was given appears anywhere."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from roomserver.identity.wallet import Wallet
from tests.clients import OPERATOR, OPERATOR_TOKEN, SignedInUser
from tests.servers import run_process
from tests.ws_client import RoomClient, create_room


async def sign_in_recording(http: httpx.AsyncClient, secrets: list[str]) -> SignedInUser:
    """Sign in as a new wallet, adding the signature and the session token to `secrets`."""
    wallet = Wallet.generate()
    challenge = await http.post("/api/v1/auth/siws/challenge", json={"address": wallet.address})
    payload = wallet.verify_payload(challenge.json())
    verified = await http.post("/api/v1/auth/wallet/verify", json=payload)
    assert verified.status_code == 200, verified.text
    body = verified.json()
    secrets += [payload["signature"], body["token"]]
    return SignedInUser(wallet=wallet, token=body["token"], user_id=body["user"]["id"])


async def test_json_lines_with_ids_and_no_secrets(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "debug",
           "OPERATOR_TOKEN": OPERATOR_TOKEN, "RATE_LIMIT_PER_MINUTE": "100000"}
    secrets: list[str] = [OPERATOR_TOKEN]
    with run_process(env, log=log) as (url, _proc):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            alice = await sign_in_recording(http, secrets)
            bob = await sign_in_recording(http, secrets)
            room = await create_room(http, alice)
            traced = await http.get(f"/api/v1/rooms/{room}", headers={**alice.headers, "X-Request-ID": "trace-me-1"})
            assert traced.status_code == 200 and traced.headers["x-request-id"] == "trace-me-1"
            refused = await http.get("/api/v1/rooms/mine", headers={"Authorization": "Bearer not-a-token-xyz"})
            assert refused.status_code == 401
            secrets.append("not-a-token-xyz")
            assert (await http.get("/ready", headers=OPERATOR)).status_code == 200
            clients = [await RoomClient.open(url, user, room) for user in (alice, bob)]
            await clients[0].request(type="chat_message", text="hello log", client_msg_id="l1")
            await clients[1].send(type="auth", token=bob.token)  # refused: already authenticated
            await clients[1].wait_for(lambda f: f["type"] == "error")
            await clients[1].send(type="no_such_frame")
            await clients[1].wait_for(lambda f: f["type"] == "error")
            for client in clients:
                await client.close()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the node logged nothing"
    records = []
    for line in lines:
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    text = log.read_text()
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) reached the log"
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert access and all("request_id" in r for r in access), access[:3]
    assert any(r.get("request_id") == "trace-me-1" and r.get("user_id") == alice.user_id
               and r.get("room_id") == room for r in access), "the traced request's ids"
    socket_lines = [r for r in records if "conn_id" in r]
    assert any(r.get("user_id") == bob.user_id and r.get("room_id") == room for r in socket_lines), \
        "the socket's frame refusals carry its conn, user and room"

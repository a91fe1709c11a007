"""Sign-In-With-Solana over HTTP: challenge → wallet signs → verify → session."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from roomserver.identity.wallet import Wallet
from tests.clients import sign_in


async def _challenge(http: httpx.AsyncClient, wallet: Wallet) -> dict:
    r = await http.post("/api/v1/auth/siws/challenge", json={"address": wallet.address})
    assert r.status_code == 200, r.text
    return r.json()


async def test_challenge_names_this_server(http: httpx.AsyncClient, base_url: str) -> None:
    wallet = Wallet.generate()
    body = await _challenge(http, wallet)
    host = base_url.split("://")[1]
    assert body["input"]["domain"] == host
    assert body["input"]["uri"] == base_url
    assert body["input"]["address"] == wallet.address
    assert body["input"]["chainId"] == "localnet"
    assert body["input"]["nonce"] == body["nonce"] and len(body["nonce"]) >= 8
    assert body["message"].startswith(f"{host} wants you to sign in with your Solana account:\n{wallet.address}")
    for field in ("issuedAt", "expirationTime", "statement", "version"):
        assert field in body["input"]


async def test_sign_in_profile_and_disconnect(http: httpx.AsyncClient) -> None:
    user = await sign_in(http)
    profile = await http.get("/api/v1/users/profile", headers=user.headers)
    assert profile.status_code == 200
    assert profile.json()["wallet_address"] == user.wallet.address
    assert profile.json()["id"] == user.user_id

    again = await sign_in(http, user.wallet)
    assert again.user_id == user.user_id, "a wallet is one user"

    bye = await http.post("/api/v1/auth/wallet/disconnect", headers=user.headers)
    assert bye.status_code == 200
    after = await http.get("/api/v1/users/profile", headers=user.headers)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_invalid"
    still = await http.get("/api/v1/users/profile", headers=again.headers)
    assert still.status_code == 200, "revoking one session leaves the other"


async def test_sign_message_only_wallets(http: httpx.AsyncClient) -> None:
    wallet = Wallet.generate()
    body = await _challenge(http, wallet)
    r = await http.post("/api/v1/auth/wallet/verify", json=wallet.sign_message_payload(body["message"]))
    assert r.status_code == 200, r.text
    assert r.json()["user"]["wallet_address"] == wallet.address


async def test_challenge_without_address(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/v1/auth/siws/challenge", json={})
    assert r.status_code == 200
    assert r.json()["message"] is None and "address" not in r.json()["input"]
    wallet = Wallet.generate()
    verified = await http.post("/api/v1/auth/wallet/verify", json=wallet.verify_payload(r.json()))
    assert verified.status_code == 200, verified.text


async def test_replay_is_refused(http: httpx.AsyncClient) -> None:
    wallet = Wallet.generate()
    payload = wallet.verify_payload(await _challenge(http, wallet))
    assert (await http.post("/api/v1/auth/wallet/verify", json=payload)).status_code == 200
    replay = await http.post("/api/v1/auth/wallet/verify", json=payload)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "nonce_used"


async def test_concurrent_verifications_exactly_one_wins(http: httpx.AsyncClient) -> None:
    wallet = Wallet.generate()
    payload = wallet.verify_payload(await _challenge(http, wallet))
    answers = await asyncio.gather(*(http.post("/api/v1/auth/wallet/verify", json=payload) for _ in range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [401] * 7
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 401} == {"nonce_used"}


async def test_nonce_this_server_never_issued(http: httpx.AsyncClient, base_url: str) -> None:
    wallet = Wallet.generate()
    body = await _challenge(http, wallet)
    forged = dict(body["input"], nonce="ABCDEFGH12345678")
    r = await http.post("/api/v1/auth/wallet/verify", json=wallet.verify_payload({"input": forged}))
    assert r.status_code == 401 and r.json()["error"]["code"] == "nonce_unknown"


async def test_challenge_for_wallet_a_signed_by_b(http: httpx.AsyncClient) -> None:
    a, b = Wallet.generate(), Wallet.generate()
    body = await _challenge(http, a)
    r = await http.post("/api/v1/auth/wallet/verify",
                        json=b.verify_payload({"input": dict(body["input"], address=b.address)}))
    assert r.status_code == 401 and r.json()["error"]["code"] == "address_mismatch"


async def test_wrong_domain_and_chain(http: httpx.AsyncClient) -> None:
    wallet = Wallet.generate()
    body = await _challenge(http, wallet)
    for change, reason in (({"domain": "evil.example"}, "domain_mismatch"),
                           ({"uri": "https://evil.example"}, "domain_mismatch"),
                           ({"chainId": "mainnet"}, "chain_mismatch")):
        r = await http.post("/api/v1/auth/wallet/verify",
                            json=wallet.verify_payload({"input": dict(body["input"], **change)}))
        assert r.status_code == 401 and r.json()["error"]["code"] == reason, (change, r.text)
    # none of those consumed the nonce: the honest message still signs in
    ok = await http.post("/api/v1/auth/wallet/verify", json=wallet.verify_payload(body))
    assert ok.status_code == 200


async def test_extra_trailing_bytes_and_bad_encodings(http: httpx.AsyncClient) -> None:
    wallet = Wallet.generate()
    body = await _challenge(http, wallet)
    message = body["message"].encode() + b"\nExtra: smuggled"
    payload = wallet.payload(message, wallet.sign(message))
    r = await http.post("/api/v1/auth/wallet/verify", json=payload)
    assert r.status_code == 401 and r.json()["error"]["code"] == "malformed"

    good = wallet.verify_payload(body)
    for broken in ({**good, "signature": "0OIl"}, {**good, "public_key": "not-base58!"},
                   {**good, "message": "%%%"},
                   {**good, "signature": good["signature"][:-4] + "1111"}):
        r = await http.post("/api/v1/auth/wallet/verify", json=broken)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] in {"malformed", "signature_invalid"}
    tampered = base64.b64encode(base64.b64decode(good["message"]).replace(b"Version: 1", b"Version: 2")).decode()
    r = await http.post("/api/v1/auth/wallet/verify", json={**good, "message": tampered})
    assert r.json()["error"]["code"] == "signature_invalid"


async def test_bad_requests_are_typed(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/v1/auth/wallet/verify", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = await http.post("/api/v1/auth/wallet/verify", json={"public_key": 5})
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_error"
    r = await http.post("/api/v1/auth/siws/challenge", json={"address": "not a key"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "malformed"
    r = await http.get("/api/v1/users/profile")
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"
    r = await http.get("/api/v1/users/profile", headers={"Authorization": "Bearer rs1_nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_invalid"
    r = await http.get("/api/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await http.post("/api/v1/auth/siws/challenge", content=b"x" * (2 << 20))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_profile_update(http: httpx.AsyncClient) -> None:
    a, b = await sign_in(http), await sign_in(http)
    r = await http.patch("/api/v1/users/profile", json={"username": "ada_l", "bio": "hi"}, headers=a.headers)
    assert r.status_code == 200 and r.json()["username"] == "ada_l"
    r = await http.patch("/api/v1/users/profile", json={"username": "ada_l"}, headers=b.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "username_taken"
    r = await http.patch("/api/v1/users/profile", json={"username": "a b"}, headers=b.headers)
    assert r.status_code == 400


async def test_openapi_and_docs(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "/api/v1/auth/wallet/verify" in spec["paths"]
    verify = spec["paths"]["/api/v1/auth/wallet/verify"]["post"]
    ref = verify["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"public_key", "message", "signature"}
    page = await http.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text


@pytest.mark.parametrize("avatar", ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<script>",
                                    "data:image/svg+xml,<svg onload=alert(1)>", "//evil.example/a.png",
                                    "file:///etc/passwd", "https://", "https://ok.example/a b.png", "vbscript:x"])
async def test_avatar_url_must_be_http_or_https(http: httpx.AsyncClient, avatar: str) -> None:
    user = await sign_in(http)
    refused = await http.patch("/api/v1/users/profile", json={"avatar_url": avatar}, headers=user.headers)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "validation_error"
    assert [e["field"] for e in error["details"]["errors"]] == ["avatar_url"]
    assert (await http.get("/api/v1/users/profile", headers=user.headers)).json()["avatar_url"] is None


async def test_an_https_avatar_is_kept(http: httpx.AsyncClient) -> None:
    user = await sign_in(http)
    url = "https://images.example/u/1.png?size=64"
    answer = await http.patch("/api/v1/users/profile", json={"avatar_url": url}, headers=user.headers)
    assert answer.status_code == 200 and answer.json()["avatar_url"] == url

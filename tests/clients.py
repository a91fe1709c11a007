"""Test clients that behave like real users: a Solana wallet signing in over HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from roomserver.identity.wallet import Wallet


@dataclass
class SignedInUser:
    wallet: Wallet
    token: str
    user_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_in(http: httpx.AsyncClient, wallet: Wallet | None = None) -> SignedInUser:
    """Challenge, sign like Phantom's `signIn`, verify; returns the session."""
    wallet = wallet or Wallet.generate()
    challenge = await http.post("/api/v1/auth/siws/challenge", json={"address": wallet.address})
    assert challenge.status_code == 200, challenge.text
    verified = await http.post("/api/v1/auth/wallet/verify", json=wallet.verify_payload(challenge.json()))
    assert verified.status_code == 200, verified.text
    body = verified.json()
    return SignedInUser(wallet=wallet, token=body["token"], user_id=body["user"]["id"])


OPERATOR_TOKEN = "operator-token-for-tests"
"""OPERATOR_TOKEN of the test servers (tests/conftest.py `settings`, tests/test_multinode.py)."""
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def health_detail(http: httpx.AsyncClient, base: str = "") -> httpx.Response:
    """`GET /health/detail` as the operator: every component's state (200 ok, 503 degraded)."""
    return await http.get(f"{base}/health/detail", headers=OPERATOR)

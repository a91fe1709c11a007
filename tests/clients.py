"""Test clients that behave like real users: a Solana wallet signing in over HTTP, through
`roomserver.client` on the test's own httpx client, without retries (a refusal fails the test)."""

from __future__ import annotations

import httpx

from roomserver.client import Rest, Session, Wallet
from roomserver.client import sign_in as siws_sign_in

SignedInUser = Session


async def sign_in(http: httpx.AsyncClient, wallet: Wallet | None = None) -> SignedInUser:
    """Challenge, sign like Phantom's `signIn`, verify; returns the session."""
    return await siws_sign_in(Rest(str(http.base_url), http=http, tries=1), wallet or Wallet.generate())


OPERATOR_TOKEN = "operator-token-for-tests"
"""OPERATOR_TOKEN of the test servers (tests/conftest.py `settings`, tests/test_multinode.py)."""
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def health_detail(http: httpx.AsyncClient, base: str = "") -> httpx.Response:
    """`GET /health/detail` as the operator: every component's state (200 ok, 503 degraded)."""
    return await http.get(f"{base}/health/detail", headers=OPERATOR)

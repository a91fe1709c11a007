"""The unit tier: tests that need no service (no Postgres, Redis, ledger, model or server).

A unit test that asks, directly or through another fixture, for a fixture that starts a service
fails at collection, so the tier stays fast and runnable with nothing installed but the venv.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SERVICE_FIXTURES = frozenset({
    "pg", "template_db", "database_url", "settings", "base_url", "http",  # Postgres, the app
    "redis_url", "redis_server",  # redis-server
    "ledger", "rpc", "payer",  # the local Solana ledger
    "embedder", "url", "client",  # the embedding model and the library app
    "fake", "fake_anthropic",  # the local Anthropic stand-in
})


_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})  # parametrize args
        used = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())) - params.keys()
        if used and item.path.is_relative_to(_HERE):
            raise pytest.UsageError(
                f"{item.nodeid} is in tests/unit but uses service fixtures {sorted(used)}; "
                "move it to tests/"
            )

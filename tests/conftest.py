"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database per test module,
and the app served by uvicorn on a free loopback port."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from roomserver.config import Settings
from roomserver.store.migrations import migrate
from roomserver.store.pgembed import EmbeddedPostgres
from roomserver.store.ports import free_port
from tests.clients import OPERATOR_TOKEN

# The service fixtures, for every test module without importing them: Postgres and the app are
# defined here; Redis, the ledger, the model, the Anthropic stand-in and the library app in their
# plugin modules. All are lazy: a test that asks for none of them starts nothing (tests/unit
# relies on it, and refuses a test that asks). A plugin imported by another is listed first, so
# pytest rewrites its asserts before anything imports it.
pytest_plugins = [
    "tests.model_fixtures",  # embedder
    "tests.redis_fixtures",  # redis_url, redis_server
    "tests.seaweed_fixtures",  # seaweedfs
    "tests.redis_cluster_fixtures",  # redis_cluster
    "tests.ledger.fixtures",  # ledger, rpc, payer
    "tests.fake_anthropic",  # fake
    "tests.library_fixtures",  # url, client
]

TEMPLATE = "rs_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), durable=False, database=TEMPLATE)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def template_db(pg: EmbeddedPostgres) -> str:
    await migrate(pg.url(TEMPLATE))
    return TEMPLATE


@pytest.fixture(scope="module")
async def database_url(pg: EmbeddedPostgres, template_db: str) -> str:
    """A fresh, fully migrated database for each test module."""
    name = f"t{next(_counter)}"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    return pg.url(name)


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    port = free_port()
    return Settings.from_env(
        {},
        database_url=database_url,
        data_dir=Path(tmp_path_factory.mktemp("data")),
        port=port,
        public_origin=f"http://127.0.0.1:{port}",
        rate_limit_per_minute=100_000,  # limits and caps lifted; tests of them set their own
        ws_sockets_per_ip=100_000,
        operator_token=OPERATOR_TOKEN,
    )


@pytest.fixture(scope="module")
async def base_url(settings: Settings) -> AsyncIterator[str]:
    from tests.servers import run_app

    async with run_app(settings) as url:
        yield url


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client

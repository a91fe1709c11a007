"""The real embedding model and tokenizer, built once per test process.

A pytest plugin (tests/conftest.py): the `embedder` fixture is the session's loaded model.
`shared_lazy_minilm()` is the same model unloaded, for apps under test that may never embed.
Loading takes ~10 s on these machines (mostly `import sentence_transformers`), so every test
module shares the one instance here. A missing model fails loudly: nothing is skipped.
"""

from __future__ import annotations

import functools

import pytest

from roomserver.library.embeddings import MiniLMEmbedder, WordPieceCounter


def shared_minilm() -> MiniLMEmbedder:
    """The session's model, loading now (in its worker thread)."""
    embedder = shared_lazy_minilm()
    embedder.start()
    return embedder


@functools.cache
def shared_token_counter() -> WordPieceCounter:
    return WordPieceCounter()


@functools.cache
def shared_lazy_minilm() -> MiniLMEmbedder:
    """The session's one model, loaded on first use: apps under test that never embed pay nothing."""
    return MiniLMEmbedder()


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    """The session's one model, loaded."""
    return shared_minilm()

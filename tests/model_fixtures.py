"""The real embedding model and tokenizer, built once per test process.

Use through fixtures in a test module, e.g.

    @pytest.fixture(scope="session")
    def embedder() -> MiniLMEmbedder:
        return shared_minilm()

Loading takes ~10 s on these machines (mostly `import sentence_transformers`), so every test
module shares the one instance here. A missing model fails loudly: nothing is skipped.
"""

from __future__ import annotations

import functools

from roomserver.embeddings import MiniLMEmbedder, WordPieceCounter


@functools.cache
def shared_minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder()
    embedder.start()
    return embedder


@functools.cache
def shared_token_counter() -> WordPieceCounter:
    return WordPieceCounter()

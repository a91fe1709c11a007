"""Embeddings with the real all-MiniLM-L6-v2 model, and the hashing stand-in."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from roomserver.library.embeddings import MiniLMEmbedder


async def test_published_example_pair(embedder: MiniLMEmbedder) -> None:
    vectors = await embedder.embed(["A man is eating food.", "A man is eating a piece of bread."])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert embedder.dimensions == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the figure published with the model (sentence-transformers' documentation)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.755, abs=0.005)


async def test_related_passage_ranks_above_unrelated(embedder: MiniLMEmbedder) -> None:
    query = "how do enzymes lower activation energy?"
    passages = [
        "The French Revolution began in 1789 with the storming of the Bastille.",
        "Catalytic proteins bind substrates at an active site and stabilise the transition state, so reactions need less energy to start.",
        "A sonnet is a fourteen-line poem with a strict rhyme scheme.",
        "Interest rates set by central banks influence inflation and employment.",
    ]
    vectors = await embedder.embed([query, *passages])
    scores = vectors[1:] @ vectors[0]
    assert int(np.argmax(scores)) == 1
    assert scores[1] - np.sort(scores)[-2] > 0.1


async def test_batches_preserve_order_and_values(embedder: MiniLMEmbedder) -> None:
    texts = [f"Sentence number {i} about topic {i % 7}." for i in range(150)]  # several batches
    together = await embedder.embed(texts)
    alone = await embedder.embed([texts[97]])
    assert together.shape == (150, 384)
    assert np.allclose(together[97], alone[0], atol=1e-5)
    assert (await embedder.embed([])).shape == (0, 384)


async def test_encoding_leaves_the_event_loop_free(embedder: MiniLMEmbedder) -> None:
    await embedder.wait_ready()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await embedder.embed(["A paragraph of text to embed. " * 20] * 16)
    finally:
        task.cancel()
    assert ticks > 10  # the loop kept running while the model worked


async def test_concurrent_embeds_are_serialised_and_correct(embedder: MiniLMEmbedder) -> None:
    texts = ["Mitochondria make ATP.", "Rivers erode valleys.", "Violins have four strings."]
    results = await asyncio.gather(*(embedder.embed([t]) for t in texts))
    direct = await embedder.embed(texts)
    for i, result in enumerate(results):
        assert np.allclose(result[0], direct[i], atol=1e-5)

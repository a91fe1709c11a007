"""Library benchmark: ingestion pages/s and chunks/s, search latency p50/p95, HNSW recall@10.

    HF_HUB_OFFLINE=1 .venv/bin/python -m roomserver.loadtests.bench_library              # a few minutes, 2k chunks
    HF_HUB_OFFLINE=1 .venv/bin/python -m roomserver.loadtests.bench_library --chunks 100000   # ~1 h (embedding)

Everything is real: an embedded PostgreSQL + pgvector, the all-MiniLM-L6-v2 model, the
extractor's child process, the production search SQL. The corpus is generated from
sentence templates over many subjects, so its embeddings cluster like real notes (random
vectors would understate HNSW recall). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roomserver.library.chunking import chunk_pages
from roomserver.library.embeddings import MiniLMEmbedder
from roomserver.library.extract import extract_pdf
from roomserver.library.search import Scope, search
from roomserver.store.db import create_pool
from roomserver.store.migrations import migrate
from roomserver.store.pgembed import EmbeddedPostgres

SUBJECTS = {
    "cell biology": ["mitochondria", "ribosomes", "the nucleus", "cell membranes", "enzymes", "chloroplasts"],
    "world history": ["the Roman Empire", "the printing press", "the Silk Road", "the French Revolution", "the Cold War"],
    "physics": ["momentum", "entropy", "electromagnetic waves", "superconductors", "orbital motion"],
    "economics": ["inflation", "comparative advantage", "interest rates", "labour markets", "public debt"],
    "computer science": ["hash tables", "public-key cryptography", "garbage collection", "compilers", "TCP congestion control"],
    "geology": ["plate tectonics", "glaciers", "volcanoes", "sedimentary rock", "earthquakes"],
    "literature": ["the sonnet", "unreliable narrators", "Greek tragedy", "the epistolary novel", "magical realism"],
    "medicine": ["the immune system", "antibiotics", "blood pressure", "vaccines", "insulin"],
}
TEMPLATES = [
    "In {subject}, {topic} matters because it links several ideas students meet early on.",
    "A common exam question asks how {topic} changed our understanding of {subject}.",
    "Researchers studying {topic} measured effects that surprised earlier textbooks.",
    "The lecture on {topic} began with a worked example and ended with open questions.",
    "Students often confuse {topic} with {other}, yet the two differ in their causes.",
    "A short history of {topic} shows how slowly consensus formed in {subject}.",
    "To explain {topic}, start from first principles and check each step against data.",
    "Case studies of {topic} appear in most introductory courses on {subject}.",
]


def paragraph(rng: random.Random) -> str:
    subject = rng.choice(list(SUBJECTS))
    topics = SUBJECTS[subject]
    topic, other = rng.sample(topics, 2)
    sentences = [rng.choice(TEMPLATES).format(subject=subject, topic=topic, other=other) for _ in range(7)]
    return f"Note {rng.randrange(10**6)} on {topic}. " + " ".join(sentences)


def questions(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        subject = rng.choice(list(SUBJECTS))
        out.append(f"why does {rng.choice(SUBJECTS[subject])} matter in {subject}?")
    return out


async def bench_ingestion(embedder: MiniLMEmbedder, pages: int) -> None:
    from tests.pdfs import simple_pdf

    rng = random.Random(1)
    pdf = simple_pdf(["\n\n".join(paragraph(rng) for _ in range(3)) for _ in range(pages)])
    counter = embedder.token_counter()
    await embedder.wait_ready()
    t0 = time.perf_counter()
    extracted = await extract_pdf(pdf)
    t1 = time.perf_counter()
    chunks = await asyncio.to_thread(chunk_pages, extracted, counter)
    t2 = time.perf_counter()
    await embedder.embed([c.text for c in chunks])
    t3 = time.perf_counter()
    total = t3 - t0
    print(f"ingestion: {pages} PDF pages -> {len(chunks)} chunks in {total:.1f} s "
          f"(extract {t1 - t0:.1f} s, chunk {t2 - t1:.1f} s, embed {t3 - t2:.1f} s)")
    print(f"  {pages / total:.1f} pages/s, {len(chunks) / total:.1f} chunks/s end to end; "
          f"embedding alone {len(chunks) / (t3 - t2):.1f} chunks/s")


async def load_corpus(pool, embedder: MiniLMEmbedder, n: int, per_doc: int = 50) -> np.ndarray:
    rng = random.Random(7)
    owner = await pool.fetchval("INSERT INTO users (wallet_address) VALUES ($1) RETURNING id", "bench-" + uuid.uuid4().hex)
    vectors = []
    t0 = time.perf_counter()
    for start in range(0, n, 512):
        texts = [paragraph(rng) for _ in range(min(512, n - start))]
        emb = await embedder.embed(texts)
        vectors.append(emb)
        async with pool.acquire() as conn, conn.transaction():
            records = []
            for i, (text, vec) in enumerate(zip(texts, emb, strict=True)):
                index = start + i
                if index % per_doc == 0:
                    doc = await conn.fetchval(
                        """INSERT INTO documents (owner_id, title, filename, content_type, size_bytes,
                               content_hash, blob_cid, status, is_public)
                           VALUES ($1, $2, 'bench.txt', 'text/plain', 0, $3, 'none', 'ready', true) RETURNING id""",
                        owner, f"Bench document {index // per_doc}", uuid.uuid4().hex)
                records.append((doc, index % per_doc, text, 1, 1, 0, len(text), 60, vec, embedder.model_id))
            await conn.copy_records_to_table(
                "document_chunks", columns=["document_id", "chunk_index", "text", "page_start", "page_end",
                                            "char_start", "char_end", "token_count", "embedding",
                                            "embedding_model"], records=records)
        done = start + len(texts)
        print(f"\r  corpus: {done}/{n} chunks ({done / (time.perf_counter() - t0):.0f}/s)", end="", flush=True)
    print()
    return np.concatenate(vectors)


async def bench_search(pool, embedder: MiniLMEmbedder, corpus: np.ndarray, queries: list[str]) -> None:
    embed_ms = []
    for q in queries[:20]:
        t = time.perf_counter()
        await embedder.embed([q])
        embed_ms.append((time.perf_counter() - t) * 1000)
    print(f"query embedding alone: median {statistics.median(embed_ms):.1f} ms")
    latencies = []
    for q in queries:
        t = time.perf_counter()
        await search(pool, embedder, q, Scope(user_id=uuid.uuid4()), limit=10)
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    p = lambda f: latencies[min(len(latencies) - 1, int(f * len(latencies)))]  # noqa: E731
    print(f"search (hybrid, permission-scoped, query embedding included), {len(queries)} queries on "
          f"{len(corpus)} chunks: p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms, mean {statistics.mean(latencies):.1f} ms")

    qvecs = await embedder.embed(queries)
    for ef in (40, 100):
        hits, sql_ms = 0, []
        async with pool.acquire() as conn:
            await conn.execute(f"SET hnsw.ef_search = {ef}")
            for qv in qvecs:
                t = time.perf_counter()
                rows = await conn.fetch(
                    f"SELECT embedding FROM document_chunks ORDER BY embedding <=> $1 LIMIT 10 /* ef {ef} */", qv)
                sql_ms.append((time.perf_counter() - t) * 1000)
                # distance-based recall: duplicates in the corpus make id-based recall ambiguous
                tenth = np.sort(corpus @ qv)[-10]
                hits += sum(1 for r in rows[:10] if float(r["embedding"].to_numpy() @ qv) >= tenth - 1e-5)
            await conn.execute("RESET hnsw.ef_search")
        sql_ms.sort()
        print(f"HNSW ef_search={ef}: recall@10 {hits / (10 * len(qvecs)):.3f} vs exact; "
              f"index top-10 p50 {sql_ms[len(sql_ms) // 2]:.2f} ms, p95 {sql_ms[int(0.95 * len(sql_ms))]:.2f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=2000, help="corpus size for search (100000 for the full run)")
    parser.add_argument("--pages", type=int, default=40, help="pages of the PDF for the ingestion figure")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    embedder = MiniLMEmbedder()
    embedder.start()
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        dsn = pg.start()
        try:
            await migrate(dsn)
            pool = await create_pool(dsn, min_size=1, max_size=4)
            try:
                await bench_ingestion(embedder, args.pages)
                corpus = await load_corpus(pool, embedder, args.chunks)
                await pool.execute("ANALYZE")
                await bench_search(pool, embedder, corpus, questions(random.Random(3), args.queries))
            finally:
                await pool.close()
        finally:
            pg.stop()
            embedder.close()


if __name__ == "__main__":
    asyncio.run(main())

"""Library search with the real model: plain-language questions find the passage that answers
them; permissions are applied inside the SQL (a private canary never leaks, not even for its
exact text; room shares grant and revoke access; bans and leaving end it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from roomserver.config import Settings
from roomserver.library.embeddings import HashingEmbedder, MiniLMEmbedder
from roomserver.library.search import Scope, search, vector_census
from roomserver.store.db import create_pool
from tests.clients import SignedInUser, sign_in
from tests.library_fixtures import ingest
from tests.library_fixtures import search as library_search
from tests.tutor_world import add_document, add_user

# One document per subject; each paragraph answers one of QUESTIONS below.
CORPUS: dict[str, list[str]] = {
    "Biology": [
        "Enzymes speed up chemical reactions by lowering their activation energy. The substrate binds "
        "to the active site, where the enzyme stabilises the transition state so that fewer collisions "
        "are needed for the reaction to proceed.",
        "Photosynthesis takes place in chloroplasts. Chlorophyll captures sunlight, water is split to "
        "release oxygen, and the Calvin cycle uses the energy of ATP and NADPH to fix carbon dioxide into sugar.",
        "The heart has four chambers. Oxygen-poor blood enters the right atrium, is pumped by the right "
        "ventricle to the lungs, and returns oxygen-rich to the left side, which pumps it through the aorta.",
    ],
    "History": [
        "The printing press built by Johannes Gutenberg around 1440 used movable metal type. Books became "
        "far cheaper, literacy spread across Europe, and the Reformation's pamphlets circulated quickly.",
        "The Treaty of Versailles, signed in 1919, ended the First World War. It forced Germany to accept "
        "responsibility for the war, pay reparations and give up territory, which bred deep resentment.",
        "The Silk Road was a network of trade routes linking China with the Mediterranean. Merchants "
        "carried silk, spices and paper westward, and ideas and religions such as Buddhism travelled with them.",
    ],
    "Physics": [
        "Newton's second law states that the net force on an object equals its mass times its acceleration. "
        "Doubling the force on a cart doubles its acceleration; doubling its mass halves it.",
        "A rainbow appears when sunlight is refracted, reflected inside raindrops and refracted again. "
        "Each wavelength bends by a different angle, so white light separates into its colours.",
        "Superconductors carry electric current with zero resistance when cooled below a critical "
        "temperature, and they expel magnetic fields, which lets a magnet levitate above them.",
    ],
    "Economics": [
        "Inflation is a general rise in prices that reduces the purchasing power of money. Central banks "
        "raise interest rates to cool demand when inflation runs above their target.",
        "Comparative advantage explains why countries gain from trade: each specialises in the goods it "
        "produces at the lowest opportunity cost, even if another country is better at everything.",
    ],
    "Computing": [
        "A hash table stores key-value pairs in an array indexed by a hash of the key. Lookups take "
        "constant time on average, but collisions must be resolved by chaining or open addressing.",
        "Public-key cryptography uses a pair of keys: anyone can encrypt with the public key, but only "
        "the holder of the private key can decrypt, and signatures prove who wrote a message.",
    ],
}

QUESTIONS: list[tuple[str, str]] = [
    ("how do enzymes make reactions faster?", "activation energy"),
    ("where does the oxygen released by plants come from?", "water is split"),
    ("which side of the heart pumps blood to the body?", "through the aorta"),
    ("why did books become cheaper in the fifteenth century?", "movable metal type"),
    ("what did Germany have to accept after WWI?", "Treaty of Versailles"),
    ("how did Buddhism spread from Asia?", "Silk Road"),
    ("what happens to acceleration if you push harder?", "mass times its acceleration"),
    ("why do we see colours after rain?", "rainbow"),
    ("materials that conduct electricity without any loss", "zero resistance"),
    ("why do central banks raise interest rates?", "purchasing power"),
    ("why do nations benefit from trading with each other?", "opportunity cost"),
    ("how can a dictionary find a value quickly?", "hash table"),
    ("how can I prove I signed a message?", "private key"),
]

CANARY = "The canary sings at midnight: zebra-quartz-4471 is the vault phrase."


@pytest.fixture(scope="module")
async def teacher(url: str) -> AsyncIterator[SignedInUser]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        user = await sign_in(http)
        for subject, paragraphs in CORPUS.items():
            await ingest(http, user, "\n\n".join(paragraphs).encode(), f"{subject}.txt",
                         title=f"{subject} notes", tags=subject)
        yield user


@pytest.mark.parametrize(("question", "answer"), QUESTIONS)
async def test_each_question_finds_its_passage_in_the_top_3(client: httpx.AsyncClient, teacher: SignedInUser,
                                                            question: str, answer: str) -> None:
    results = await library_search(client, teacher, question, limit=3)
    assert any(answer in r["text"] for r in results), [r["text"][:60] for r in results]
    top = results[0]
    assert set(top) >= {"document_id", "title", "text", "page_start", "page_end", "score"}
    assert top["page_start"] == 1 and top["title"].endswith(" notes")


async def test_tags_filter_the_search(client: httpx.AsyncClient, teacher: SignedInUser) -> None:
    results = await library_search(client, teacher, "how do enzymes make reactions faster?", tags="physics")
    assert results and {r["title"] for r in results} == {"Physics notes"}


async def test_unrelated_questions_score_low(client: httpx.AsyncClient, teacher: SignedInUser) -> None:
    on_topic = await library_search(client, teacher, "how do enzymes make reactions faster?", limit=1)
    off_topic = await library_search(client, teacher, "best pizza toppings for a party", limit=1)
    assert on_topic[0]["score"] > 0.5 > off_topic[0]["score"]


async def test_search_pages_with_a_cursor(client: httpx.AsyncClient, teacher: SignedInUser) -> None:
    first = await client.get("/api/v1/documents/library", headers=teacher.headers,
                             params={"q": "energy", "limit": 2})
    second = await client.get("/api/v1/documents/library", headers=teacher.headers,
                              params={"q": "energy", "limit": 2, "cursor": first.json()["next_cursor"]})
    ids = [r["chunk_id"] for r in first.json()["results"] + second.json()["results"]]
    assert len(ids) == 4 and len(set(ids)) == 4


async def test_a_private_canary_never_reaches_another_user(client: httpx.AsyncClient, settings: Settings,
                                                           embedder: MiniLMEmbedder) -> None:
    alice, bob = await sign_in(client), await sign_in(client)
    doc = await ingest(client, alice, f"Private notes.\n\n{CANARY}\n".encode(), "secret.txt")

    async def bob_sees_canary() -> bool:
        for query in (CANARY, "zebra-quartz-4471", "vault phrase canary midnight"):
            for params in ({}, {"tags": None}):
                results = await library_search(client, bob, query, limit=50, **{k: v for k, v in params.items() if v})
                if any(r["document_id"] == doc["id"] or "zebra" in r["text"] for r in results):
                    return True
        listing = await client.get("/api/v1/documents/library", headers=bob.headers)
        return any(d["id"] == doc["id"] for d in listing.json()["results"])

    assert (await library_search(client, alice, CANARY))[0]["document_id"] == doc["id"]
    assert not await bob_sees_canary()

    # shared to a room Bob belongs to: visible; room search is scoped to the room
    room = (await client.post("/api/v1/rooms", headers=alice.headers,
                              json={"name": "Canary club", "room_type": "public"})).json()
    assert (await client.post(f"/api/v1/rooms/{room['id']}/join", headers=bob.headers)).status_code == 200
    share = await client.post(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                              json={"room_id": room["id"]})
    assert share.status_code == 201
    assert await bob_sees_canary()
    in_room = await library_search(client, bob, CANARY, room_id=room["id"])
    assert in_room[0]["document_id"] == doc["id"]

    # revoked: gone at once
    revoke = await client.delete(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers,
                                 params={"room_id": room["id"]})
    assert revoke.status_code == 200
    assert not await bob_sees_canary()

    # shared again, then Bob leaves: gone; rejoins: back; banned: gone
    await client.post(f"/api/v1/documents/{doc['id']}/share", headers=alice.headers, json={"room_id": room["id"]})
    assert await bob_sees_canary()
    assert (await client.post(f"/api/v1/rooms/{room['id']}/leave", headers=bob.headers)).status_code == 200
    assert not await bob_sees_canary()
    outsider = await client.get("/api/v1/documents/library", headers=bob.headers, params={"room_id": room["id"]})
    assert outsider.status_code == 403 and outsider.json()["error"]["code"] == "not_member"
    await client.post(f"/api/v1/rooms/{room['id']}/join", headers=bob.headers)
    assert await bob_sees_canary()
    ban = await client.post(f"/api/v1/rooms/{room['id']}/bans", headers=alice.headers, json={"user_id": bob.user_id})
    assert ban.status_code in (200, 201), ban.text
    assert not await bob_sees_canary()

    # the same holds for the service the tutor calls, for user and room scopes
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        as_bob = await search(pool, embedder, CANARY, Scope(user_id=uuid.UUID(bob.user_id)), limit=50)
        assert all(hit.document_id != uuid.UUID(doc["id"]) for hit in as_bob)
        as_room = await search(pool, embedder, CANARY, Scope(room_id=uuid.UUID(room["id"])), limit=5)
        assert as_room[0].document_id == uuid.UUID(doc["id"])
        nowhere = await search(pool, embedder, CANARY, Scope(room_id=uuid.uuid4(), include_public=False))
        assert nowhere == []
        # an expired share grants nothing (forged by moving its expiry into the past: no waiting)
        await pool.execute("UPDATE document_permissions SET expires_at = now() - interval '1 second' "
                           "WHERE document_id = $1", uuid.UUID(doc["id"]))
        expired = await search(pool, embedder, CANARY, Scope(room_id=uuid.UUID(room["id"])), limit=50)
        assert all(hit.document_id != uuid.UUID(doc["id"]) for hit in expired)
    finally:
        await pool.close()


class _Renamed(HashingEmbedder):
    """The same vectors under another model's name: what a model upgrade looks like to the store."""

    def __init__(self, model_id: str) -> None:
        super().__init__()
        self.model_id = model_id


async def test_vectors_of_another_model_are_never_compared(settings: Settings) -> None:
    pool = await create_pool(settings.database_url)
    try:
        old = _Renamed("old-model@1")
        owner = await add_user(pool)
        word = f"quasar{uuid.uuid4().hex[:8]}"
        doc = await add_document(pool, old, owner, "Old vectors", [(1, f"A {word} emits radio waves.")],
                                 public=True)
        scope = Scope(user_id=owner)
        [same] = [h for h in await search(pool, old, f"{word} radio", scope) if h.document_id == doc]
        assert same.score > 0.3  # the model that made the vectors compares them
        new = _Renamed("new-model@2")  # identical vectors, but another model's name
        [other] = [h for h in await search(pool, new, f"{word} radio", scope) if h.document_id == doc]
        assert other.score == 0.0  # found by its words alone, its vector ignored
        census = await vector_census(pool, new.model_id)
        assert census["other_model"] >= 1
        assert (await vector_census(pool, old.model_id))["other_model"] < census["other_model"]
    finally:
        await pool.close()


async def test_lexical_search_without_an_embedder_ranks_by_words(settings: Settings) -> None:
    pool = await create_pool(settings.database_url)
    try:
        owner = await add_user(pool)
        word = f"nebula{uuid.uuid4().hex[:8]}"
        both = await add_document(pool, HashingEmbedder(), owner, "Both words",
                                  [(1, f"The {word} glows; the {word} is a cloud of dust and gas.")])
        one = await add_document(pool, HashingEmbedder(), owner, "One word", [(1, f"A {word} far away.")])
        hits = await search(pool, None, f"{word} dust", Scope(user_id=owner, include_public=False))
        assert [h.document_id for h in hits[:2]] == [both, one]
        assert all(0 < h.score < 1 for h in hits)
        assert await search(pool, None, "zzzunmatchedword", Scope(user_id=owner)) == []
    finally:
        await pool.close()

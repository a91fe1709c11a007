"""Highlights over real HTTP: checked against the ingested text and its pages; room
highlights need membership and a document shared to the room; who sees which highlights."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from roomserver.library.highlights import PagedText
from tests import pdfs
from tests.clients import SignedInUser, sign_in
from tests.library_fixtures import ingest, upload

PHOTO = pdfs.TOPICS[1][1]  # printed on page 2


@pytest.fixture(scope="module")
async def owner_and_doc(url: str) -> tuple[SignedInUser, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        owner = await sign_in(http)
        return owner, await ingest(http, owner, pdfs.study_pdf(), "biochem.pdf")


async def post(client: httpx.AsyncClient, user: SignedInUser, doc: dict[str, Any], **body: Any) -> httpx.Response:
    return await client.post(f"/api/v1/documents/{doc['id']}/highlights", headers=user.headers, json=body)


async def test_a_highlight_on_its_page_is_stored(client: httpx.AsyncClient,
                                                 owner_and_doc: tuple[SignedInUser, dict[str, Any]]) -> None:
    owner, doc = owner_and_doc
    text = "chlorophyll absorbs photons near 680 nm and 700 nm"
    created = await post(client, owner, doc, text=text, page=2, context_before="In the light-dependent reactions,",
                         context_after="and splits water", position={"x": 72, "y": 300.5, "width": 200, "height": 14},
                         color="#ffcc00", note="wavelengths")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["page"] == 2 and body["text"] == text and body["position"]["y"] == 300.5
    # no page given: the page is found
    found = await post(client, owner, doc, text="ATP synthase uses that gradient")
    assert found.status_code == 201 and found.json()["page"] == 5
    listed = await client.get(f"/api/v1/documents/{doc['id']}/highlights", headers=owner.headers)
    assert [h["text"] for h in listed.json()["highlights"]][:2] == [text, "ATP synthase uses that gradient"]


async def test_a_highlight_must_match_the_document(client: httpx.AsyncClient,
                                                   owner_and_doc: tuple[SignedInUser, dict[str, Any]]) -> None:
    owner, doc = owner_and_doc
    wrong_page = await post(client, owner, doc, text="chlorophyll absorbs photons", page=4)
    assert wrong_page.status_code == 400
    assert wrong_page.json()["error"]["code"] == "highlight_not_on_page"
    assert wrong_page.json()["error"]["details"]["found_on_pages"] == [2]
    invented = await post(client, owner, doc, text="chlorophyll absorbs gamma rays")
    assert invented.status_code == 400 and invented.json()["error"]["code"] == "highlight_not_in_document"
    context = await post(client, owner, doc, text="chlorophyll absorbs photons", context_before="Mitochondria say")
    assert context.status_code == 400 and context.json()["error"]["code"] == "highlight_context_mismatch"
    header = await post(client, owner, doc, text="Lecture Notes")  # running header: not document text
    assert header.status_code == 400
    for bad in ({"text": ""}, {"text": "x", "page": 0}, {"text": "x", "color": "red;"},
                {"text": "x", "position": {"x": -1, "y": 0, "width": 1, "height": 1}}, {"text": "x", "extra": 1}):
        response = await post(client, owner, doc, **bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error", bad


async def test_room_highlights_need_membership_and_a_shared_document(
        client: httpx.AsyncClient, owner_and_doc: tuple[SignedInUser, dict[str, Any]]) -> None:
    owner, doc = owner_and_doc
    member, stranger = await sign_in(client), await sign_in(client)
    room = (await client.post("/api/v1/rooms", headers=owner.headers,
                              json={"name": "Biochem study", "room_type": "public"})).json()
    await client.post(f"/api/v1/rooms/{room['id']}/join", headers=member.headers)
    text = "The Calvin cycle then fixes carbon dioxide into sugars"
    not_shared = await post(client, owner, doc, text=text, room_id=room["id"])
    assert not_shared.status_code == 403 and not_shared.json()["error"]["code"] == "document_not_in_room"
    await client.post(f"/api/v1/documents/{doc['id']}/share", headers=owner.headers, json={"room_id": room["id"]})
    in_room = await post(client, owner, doc, text=text, page=2, room_id=room["id"])
    assert in_room.status_code == 201
    private = await post(client, owner, doc, text="Heat denatures an enzyme")
    assert private.status_code == 201
    # the member sees the room's highlight, not the owner's private one; a stranger sees nothing
    seen = await client.get(f"/api/v1/documents/{doc['id']}/highlights", headers=member.headers)
    assert [h["id"] for h in seen.json()["highlights"]] == [in_room.json()["id"]]
    by_member = await post(client, member, doc, text="splits water, releasing oxygen", room_id=room["id"])
    assert by_member.status_code == 201
    assert (await client.get(f"/api/v1/documents/{doc['id']}/highlights", headers=stranger.headers)).status_code == 404
    assert (await post(client, stranger, doc, text=text)).status_code == 404


async def test_a_document_still_ingesting_cannot_be_highlighted(client: httpx.AsyncClient) -> None:
    user = await sign_in(client)
    response = await upload(client, user, pdfs.decompression_bomb_pdf(), "slow.pdf")
    early = await post(client, user, response.json()["document"], text="boom")
    assert early.status_code == 409 and early.json()["error"]["code"] == "document_not_ready"


async def test_checking_runs_off_the_event_loop_and_the_text_is_cached(
        client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page texts are normalised in a worker thread (a /health request is answered while
    the normaliser is held) and once per document version (two highlights, one run)."""
    user = await sign_in(client)
    doc = await ingest(client, user, b"Osmosis moves water across a membrane.\n\nDiffusion needs no energy.\n",
                       "cell.txt")
    real, held, release = PagedText.of, threading.Event(), threading.Event()
    runs: list[bool] = []  # per run: was it on the event loop's thread?
    loop_thread = threading.get_ident()

    def slow_normalise(pages: Any) -> PagedText:
        runs.append(threading.get_ident() == loop_thread)
        held.set()
        release.wait(5)
        held.clear()
        return real(pages)

    monkeypatch.setattr(PagedText, "of", staticmethod(slow_normalise))
    first = asyncio.create_task(post(client, user, doc, text="water across a membrane"))
    try:
        while not runs:
            await asyncio.sleep(0.01)
        health = await client.get("/health")
        assert health.status_code in (200, 503) and held.is_set()  # answered while normalising
    finally:
        release.set()
    assert (await first).status_code == 201
    second = await post(client, user, doc, text="Diffusion needs no energy")
    assert second.status_code == 201 and second.json()["page"] == 1
    assert runs == [False]

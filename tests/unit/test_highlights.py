"""Locating a highlight's text in a document's pages, whatever the whitespace and page breaks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.library.highlights import PagedText, PageTexts, locate
from roomserver.library.models import HighlightDraft


def test_whitespace_and_page_breaks_do_not_matter() -> None:
    paged = PagedText.of(["First page ends with a sentence that", "continues on the second page.  Then more."])
    assert locate(paged, HighlightDraft(text="sentence that\ncontinues on", page=2)) == 2
    assert locate(paged, HighlightDraft(text="sentence that continues", page=1)) == 1
    assert locate(paged, HighlightDraft(text="Then   more.")) == 2


@given(st.text(alphabet=" ab\n", max_size=30), st.integers(0, 30), st.text(alphabet=" ab", max_size=5))
def test_context_checks_agree_with_the_plain_definition(text: str, at: int, context: str) -> None:
    paged = PagedText(text, [0])
    at = min(at, len(text))
    assert paged.preceded_by(at, context) == text[:at].rstrip().endswith(context)
    assert paged.followed_by(at, context) == text[at:].lstrip().startswith(context)


@given(st.lists(st.text(alphabet="ab \n", max_size=6), min_size=1, max_size=8), st.data())
def test_page_at_is_the_last_page_starting_at_or_before(pages: list[str], data: st.DataObject) -> None:
    paged = PagedText.of(pages)
    offset = data.draw(st.integers(0, max(0, len(paged.text) - 1)))
    expected = max([n for n, start in enumerate(paged.starts, start=1) if start <= offset], default=1)
    assert paged.page_at(offset) == expected


class Pages:
    """A fake page store: counts loads; `gate` (when set) holds every load until released."""

    def __init__(self, *texts: str) -> None:
        self.texts, self.loads = list(texts), 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> list[str]:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.texts


async def test_a_version_is_normalised_once_even_when_asked_concurrently() -> None:
    cache, pages, doc, v1 = PageTexts(), Pages("An  enzyme\n denatures."), uuid.uuid4(), datetime.now(UTC)
    pages.gate = asyncio.Event()
    both = asyncio.gather(cache.get(doc, v1, pages), cache.get(doc, v1, pages))
    await asyncio.sleep(0)
    pages.gate.set()
    first, second = await both
    third = await cache.get(doc, v1, pages)
    assert first is second is third and first.text == "An enzyme denatures."
    assert (cache.computed, pages.loads) == (1, 1)


async def test_a_new_version_replaces_the_old_text() -> None:
    cache, doc, v1 = PageTexts(), uuid.uuid4(), datetime.now(UTC)
    assert (await cache.get(doc, v1, Pages("old text"))).text == "old text"
    v2 = v1 + timedelta(seconds=1)
    assert (await cache.get(doc, v2, Pages("new text"))).text == "new text"
    assert (await cache.get(doc, v2, Pages("unused"))).text == "new text"
    assert cache.computed == 2


async def test_the_cache_is_bounded_by_entries_and_characters() -> None:
    cache, now = PageTexts(max_entries=2, max_chars=20), datetime.now(UTC)
    a, b, c, huge = (uuid.uuid4() for _ in range(4))
    for doc in (a, b):
        await cache.get(doc, now, Pages("0123456789"))
    await cache.get(a, now, Pages("unused"))  # a is now the most recently used
    await cache.get(c, now, Pages("0123456789"))  # evicts b (least recently used)
    assert cache.computed == 3
    await cache.get(a, now, Pages("unused"))
    assert cache.computed == 3
    await cache.get(b, now, Pages("0123456789"))
    assert cache.computed == 4
    await cache.get(huge, now, Pages("x" * 21))  # larger than the whole budget: not kept
    await cache.get(huge, now, Pages("x" * 21))
    assert cache.computed == 6


async def test_a_failed_load_reaches_its_callers_and_is_not_cached() -> None:
    cache, doc, now = PageTexts(), uuid.uuid4(), datetime.now(UTC)

    async def broken() -> list[str]:
        raise ConnectionError("database went away")

    with pytest.raises(ConnectionError):
        await cache.get(doc, now, broken)
    assert (await cache.get(doc, now, Pages("back again"))).text == "back again"

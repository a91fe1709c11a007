"""Chunking: token budget, exact offsets, sentence overlap, page ranges, with the real tokenizer too."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.library.chunking import Chunk, chunk_pages, join_pages
from roomserver.library.embeddings import WordPieceCounter
from roomserver.library.extract import Page, extract_pdf
from tests import pdfs
from tests.model_fixtures import shared_token_counter


def words(text: str) -> int:
    return len(text.split())


def sentences(n: int, prefix: str, length: int = 6) -> str:
    return " ".join(f"{prefix}{i} " + " ".join(["word"] * (length - 2)) + " end." for i in range(n))


def check_invariants(pages: list[Page], chunks: list[Chunk], count, max_tokens: int) -> None:  # type: ignore[no-untyped-def]
    text = join_pages(pages)
    starts = _page_starts(pages)
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.token_count == count(chunk.text) <= max_tokens
        assert _page_at(starts, chunk.char_start) == chunk.page_start
        assert _page_at(starts, chunk.char_end - 1) == chunk.page_end
    for before, after in pairwise(chunks):
        assert before.char_start < after.char_start and before.char_end < after.char_end
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.char_start, chunk.char_end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


def _page_starts(pages: list[Page]) -> list[tuple[int, int]]:
    out, offset = [], 0
    for page in pages:
        out.append((offset, page.number))
        offset += len(page.text) + 2
    return out


def _page_at(starts: list[tuple[int, int]], position: int) -> int:
    return [number for start, number in starts if start <= position][-1]


def test_chunks_respect_the_budget_and_overlap_by_one_sentence() -> None:
    pages = [Page(1, sentences(30, "Alpha")), Page(2, sentences(30, "Beta"))]
    chunks = chunk_pages(pages, words, max_tokens=40)
    check_invariants(pages, chunks, words, 40)
    for before, after in pairwise(chunks):
        last_sentence = re.findall(r"\S[^.]*\.", before.text)[-1]
        assert after.text.startswith(last_sentence)
    assert {(c.page_start, c.page_end) for c in chunks} >= {(1, 1), (1, 2), (2, 2)}


def test_without_overlap_chunks_tile_the_text() -> None:
    pages = [Page(1, sentences(20, "S"))]
    chunks = chunk_pages(pages, words, max_tokens=20, overlap=False)
    assert " ".join(c.text for c in chunks) == pages[0].text


def test_an_over_long_sentence_and_an_over_long_word_are_cut() -> None:
    long_sentence = " ".join(f"w{i}" for i in range(95)) + "."
    giant = "x" * 500
    pages = [Page(1, f"Short one. {long_sentence} {giant} Tail.")]

    def chars_over_ten(text: str) -> int:  # a counter in which one word can exceed the budget
        return sum(max(1, len(w) // 10) for w in text.split())

    chunks = chunk_pages(pages, chars_over_ten, max_tokens=30)
    check_invariants(pages, chunks, chars_over_ten, 30)


def test_abbreviations_do_not_end_sentences() -> None:
    pages = [Page(1, "Use a catalyst, e.g. an enzyme, to speed it up. Then measure the rate.")]
    chunks = chunk_pages(pages, words, max_tokens=12)
    assert [c.text for c in chunks] == [
        "Use a catalyst, e.g. an enzyme, to speed it up.",
        "Then measure the rate.",
    ]


def test_empty_document_has_no_chunks() -> None:
    assert chunk_pages([Page(1, ""), Page(2, "  ")], words) == []


SENTENCE = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(st.text("abcdéAÉ", min_size=1, max_size=12), min_size=1, max_size=30),
    st.sampled_from([".", "!", "?", "", ".”"]),
)
PAGE_TEXT = st.lists(st.lists(SENTENCE, max_size=6).map(" ".join), max_size=4).map("\n\n".join)


@given(
    st.lists(PAGE_TEXT, min_size=1, max_size=5),
    st.integers(min_value=1, max_value=60),
    st.booleans(),
)
def test_invariants_hold_for_any_document(texts: list[str], max_tokens: int, overlap: bool) -> None:
    pages = [Page(n, t) for n, t in enumerate(texts, start=1)]
    chunks = chunk_pages(pages, words, max_tokens=max_tokens, overlap=overlap)
    check_invariants(pages, chunks, words, max_tokens)


# ------------------------------------------------------------------ the real tokenizer


@pytest.fixture(scope="session")
def counter() -> WordPieceCounter:
    return shared_token_counter()


def test_word_piece_counter_neither_pads_nor_truncates(counter: WordPieceCounter) -> None:
    assert counter("A man is eating food.") == 6
    assert counter("enzyme " * 400) == 400 * counter("enzyme")
    assert counter.count_batch(["", "Hello world"]) == [0, 2]


async def test_study_pdf_chunks_have_right_pages_and_no_running_lines(
    counter: WordPieceCounter,
) -> None:
    pages = await extract_pdf(pdfs.study_pdf())
    chunks = chunk_pages(pages, counter)
    check_invariants(pages, chunks, counter, 200)
    assert all(c.token_count > 60 for c in chunks[:-1])  # the budget is used, not wasted
    for chunk in chunks:
        assert pdfs.HEADER not in chunk.text and "Genève" not in chunk.text
        assert not re.search(r"page \d of \d", chunk.text)
        for number, (_, body) in enumerate(pdfs.TOPICS, start=1):
            if body[:60] in chunk.text:
                assert chunk.page_start <= number <= chunk.page_end
    # each page's opening passage is cited with that page
    for number, (_, body) in enumerate(pdfs.TOPICS, start=1):
        first = next(c for c in chunks if body[:60] in c.text)
        assert first.page_start <= number <= first.page_end

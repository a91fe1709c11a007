"""Split a document's pages into overlapping chunks of at most `max_tokens` model tokens.

The document's text is its pages joined by PAGE_SEPARATOR (`join_pages`); every chunk is
exactly `text[char_start:char_end]` of it, and knows the pages it spans. Chunks are built
from whole sentences (a sentence longer than the budget is cut between words) and start
with the previous chunk's last sentence, so a thought cut at a boundary appears whole in one
of the two. A chunk does not end with the first sentence of a new page. Token counts come from an injected counter: the embedding model's own
(`embeddings.WordPieceCounter`) in production, anything additive over words in tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from roomserver.library.extract import Page

TokenCounter = Callable[[str], int]
PAGE_SEPARATOR = "\n\n"
DEFAULT_MAX_TOKENS = 200

# A sentence ends at . ! ? … (plus closing quotes/brackets) before whitespace, unless a
# lower-case letter follows ("e.g. the" does not end a sentence).
SENTENCE_BREAK = re.compile(r"(?<=[.!?…])[\"'”’»)\]]*(\s+)(?=\S)")  # noqa: RUF001
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    token_count: int


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of an over-long one) in document coordinates."""

    start: int
    end: int
    page: int
    tokens: int


def join_pages(pages: Sequence[Page]) -> str:
    """The document text that chunk offsets refer to."""
    return PAGE_SEPARATOR.join(page.text for page in pages)


def chunk_pages(
    pages: Sequence[Page],
    count_tokens: TokenCounter,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap: bool = True,
) -> list[Chunk]:
    """Chunks of `join_pages(pages)`, each of at most `max_tokens` tokens, in order."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    text = join_pages(pages)
    units = list(_units(pages, count_tokens, max_tokens))
    chunks: list[Chunk] = []
    first = fresh = 0  # fresh: the first unit not yet in any chunk
    while fresh < len(units):
        last = _fill(units, first, fresh, max_tokens, text, count_tokens)
        if last < fresh:  # the carried sentence leaves no room for a new one
            first = fresh
            continue
        chunks.append(_chunk(len(chunks), text, units[first : last + 1], count_tokens))
        first = last if overlap and last > first else last + 1
        fresh = last + 1
    return chunks


def _fill(
    units: list[_Unit], first: int, fresh: int, max_tokens: int, text: str, count: TokenCounter
) -> int:
    """Index of the last unit of the chunk that starts at `first`."""
    total, last = units[first].tokens, first
    while last + 1 < len(units) and total + units[last + 1].tokens <= max_tokens:
        last += 1
        total += units[last].tokens
    # the sum is exact for tokenizers that split on whitespace; check, in case one is not
    while last > first and count(text[units[first].start : units[last].end]) > max_tokens:
        last -= 1
    # a page's first sentence (often its title) opens the next chunk rather than closing this one
    if last - 1 >= fresh and last + 1 < len(units) and units[last].page != units[last - 1].page:
        last -= 1
    return last


def _chunk(index: int, text: str, units: list[_Unit], count: TokenCounter) -> Chunk:
    start, end = units[0].start, units[-1].end
    body = text[start:end]
    return Chunk(index, body, units[0].page, units[-1].page, start, end, count(body))


def _units(pages: Sequence[Page], count: TokenCounter, max_tokens: int) -> Iterator[_Unit]:
    offset = 0
    for page in pages:
        for start, end in _sentences(page.text):
            sentence = page.text[start:end]
            tokens = count(sentence)
            if tokens <= max_tokens:
                yield _Unit(offset + start, offset + end, page.number, tokens)
            else:
                for piece_start, piece_end, piece_tokens in _cut(sentence, count, max_tokens):
                    yield _Unit(
                        offset + start + piece_start,
                        offset + start + piece_end,
                        page.number,
                        piece_tokens,
                    )
        offset += len(page.text) + len(PAGE_SEPARATOR)


def _sentences(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence, whitespace excluded."""
    for para_start, para_end in _spans(text, PARAGRAPH_BREAK):
        paragraph = text[para_start:para_end]
        for start, end in _spans(paragraph, SENTENCE_BREAK, group=1):
            piece = paragraph[start:end]
            lead = len(piece) - len(piece.lstrip())
            trimmed = piece.strip()
            if trimmed:
                yield para_start + start + lead, para_start + start + lead + len(trimmed)


def _spans(text: str, separator: re.Pattern[str], group: int = 0) -> Iterator[tuple[int, int]]:
    """Pieces of `text` between separators; a sentence break before lower case is ignored."""
    start = 0
    for match in separator.finditer(text):
        if separator is SENTENCE_BREAK and text[match.end(group)].islower():
            continue
        yield start, match.start(group)
        start = match.end(group)
    yield start, len(text)


def _cut(sentence: str, count: TokenCounter, max_tokens: int) -> Iterator[tuple[int, int, int]]:
    """Pieces of an over-long sentence, cut between words (inside a word if one is too long)."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", sentence)]
    piece_start, piece_end, tokens = words[0][0], words[0][0], 0
    for word_start, word_end in words:
        word_tokens = count(sentence[word_start:word_end])
        if word_tokens > max_tokens:
            if tokens:
                yield piece_start, piece_end, tokens
            yield from _cut_word(sentence, word_start, word_end, count, max_tokens)
            piece_start, piece_end, tokens = word_end, word_end, 0
            continue
        if tokens and tokens + word_tokens > max_tokens:
            yield piece_start, piece_end, tokens
            piece_start, tokens = word_start, 0
        if not tokens:
            piece_start = word_start
        piece_end, tokens = word_end, tokens + word_tokens
    if tokens:
        yield piece_start, piece_end, tokens


def _cut_word(
    text: str, start: int, end: int, count: TokenCounter, max_tokens: int
) -> Iterator[tuple[int, int, int]]:
    while start < end:
        stop = end
        while count(text[start:stop]) > max_tokens and stop - start > 1:
            stop = start + (stop - start) // 2
        yield start, stop, count(text[start:stop])
        start = stop

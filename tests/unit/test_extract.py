"""Extraction: clean pages from real PDFs, hostile PDFs contained, text/Markdown/CSV pages."""

from __future__ import annotations

import re
import time

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from roomserver.errors import BadRequest
from roomserver.library.extract import (
    ExtractionLimits,
    Page,
    bounded_text_pages,
    extract_pages,
    extract_pdf,
    rejoin_lines,
    remove_running_lines,
    text_pages,
)
from roomserver.library.sniff import FileKind
from tests import pdfs
from tests.bombs import amplifying_csv, nested_markdown


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def study_pages() -> list[Page]:
    return await extract_pdf(pdfs.study_pdf())


def test_study_pdf_pages_are_numbered_and_in_order(study_pages: list[Page]) -> None:
    assert [p.number for p in study_pages] == [1, 2, 3, 4, 5]
    for page, (title, _) in zip(study_pages, pdfs.TOPICS, strict=True):
        assert page.text.startswith(title + "\n\n")


def test_running_headers_and_footers_are_gone(study_pages: list[Page]) -> None:
    for page in study_pages:
        assert pdfs.HEADER not in page.text
        assert "Genève" not in page.text
        assert not re.search(r"page \d+ of \d+", page.text)


def test_unicode_survives(study_pages: list[Page]) -> None:
    membranes = study_pages[2].text
    assert "sodium–potassium" in membranes  # noqa: RUF001
    assert "Na⁺" in membranes and "−70 mV" in membranes  # noqa: RUF001


def test_wrapped_lines_become_paragraphs(study_pages: list[Page]) -> None:
    # pypdf gives one line per printed line; every sentence must come back whole.
    for page, (_, body) in zip(study_pages, pdfs.TOPICS, strict=True):
        assert body in page.text
        assert "\n" not in page.text.split("\n\n", 1)[1].replace("\n\n", "")
    # both columns are present, the left one first
    first = study_pages[0].text
    assert first.index("In summary:") < first.index("Review of enzymes:")


async def test_password_free_encryption_is_readable() -> None:
    pages = await extract_pdf(pdfs.encrypted_pdf(user_password=""))
    assert pages[0].text == "Top secret notes"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (pdfs.encrypted_pdf, "encrypted_pdf"),
        (pdfs.corrupt_pdf, "corrupt_pdf"),
        (pdfs.truncated_pdf, "corrupt_pdf"),
        (pdfs.nested_pdf, "pdf_too_complex"),
        (pdfs.decompression_bomb_pdf, "pdf_too_complex"),
        (lambda: b"", "corrupt_pdf"),
    ],
    ids=["encrypted", "corrupt", "truncated", "nested", "bomb", "empty"],
)
async def test_hostile_pdfs_fail_with_a_reason(make, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest) as info:
        await extract_pdf(make())
    assert info.value.code == code
    assert info.value.message


async def test_memory_limit_stops_a_pdf_that_needs_too_much() -> None:
    hungry = pdfs.decompression_bomb_pdf(64 << 20)  # under pypdf's own cap, over our limit
    limits = ExtractionLimits(memory_bytes=150 << 20)
    with pytest.raises(BadRequest) as info:
        await extract_pdf(hungry, limits)
    assert info.value.code == "pdf_too_complex"
    assert "memory" in info.value.message
    # the same limit leaves room for real work
    assert len(await extract_pdf(pdfs.study_pdf(), limits)) == 5


async def test_cpu_limit_stops_a_slow_pdf() -> None:
    slow = pdfs.decompression_bomb_pdf(64 << 20)  # ~12 s of content-stream parsing
    with pytest.raises(BadRequest) as info:
        await extract_pdf(slow, ExtractionLimits(cpu_seconds=1))
    assert info.value.code == "pdf_too_complex"
    assert "CPU" in info.value.message


async def test_wall_time_limit() -> None:
    with pytest.raises(BadRequest) as info:
        await extract_pdf(pdfs.study_pdf(), ExtractionLimits(wall_seconds=0.01))
    assert info.value.code == "extraction_timeout"


async def test_page_count_limit() -> None:
    with pytest.raises(BadRequest) as info:
        await extract_pdf(pdfs.many_pages_pdf(300), ExtractionLimits(max_pages=200))
    assert info.value.code == "too_large" and info.value.details == {"max_pages": 200}
    assert len(await extract_pdf(pdfs.many_pages_pdf(20))) == 20


async def test_a_pdf_without_text_is_no_text() -> None:
    with pytest.raises(BadRequest) as info:
        await extract_pages(pdfs.simple_pdf(["", ""]), FileKind.PDF)
    assert info.value.code == "no_text"


# ------------------------------------------------------------------ cleaning, pure


BODY = [
    "Entropy always grows.",
    "Heat flows downhill.",
    "Work is path dependent.",
    "Gases expand.",
    "Ice melts.",
    "Stars burn.",
]


def test_running_lines_tolerate_page_numbers_and_keep_body_lines() -> None:
    pages = [
        [
            "Chapter 3 · Thermodynamics",
            BODY[n],
            "A line repeated in the body.",
            BODY[n - 1],
            f"— {n + 1} —",
        ]
        for n in range(6)
    ]
    pages[0][1:1] = ["Section 3.1"]  # an edge line on only two pages is not running
    pages[3][1:1] = ["Section 3.1"]
    cleaned = remove_running_lines(pages)
    assert cleaned[0] == ["Section 3.1", BODY[0], "A line repeated in the body.", BODY[-1]]
    assert cleaned[1] == [BODY[1], "A line repeated in the body.", BODY[0]]


def test_a_single_page_keeps_everything() -> None:
    assert remove_running_lines([["Title", "Body", "1"]]) == [["Title", "Body", "1"]]


def test_rejoin_hyphenation_wraps_bullets_and_paragraphs() -> None:
    lines = [
        "Catalysts lower the activation energy of a reaction, so that enzy-",
        "mes speed up metabolism without being consumed in the process at",
        "all. Their effect is large.",
        "• first point",
        "• second point",
        "A soft\u00ad",
        "hyphen joins too, and wrapping continues on the following line of",
        "text.",
    ]
    text = rejoin_lines(lines)
    assert "so that enzymes speed up" in text
    assert "process at all." in text
    assert text.split("\n\n") == [
        "Catalysts lower the activation energy of a reaction, so that enzymes speed up metabolism without being consumed in the process at all. Their effect is large.",
        "• first point",
        "• second point",
        "A softhyphen joins too, and wrapping continues on the following line of text.",
    ]


@given(
    st.lists(
        st.text(
            st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
            min_size=1,
            max_size=60,
        )
        .map(str.strip)
        .filter(lambda s: s and not s.endswith(("-", "\u00ad"))),
        max_size=30,
    )
)
def test_rejoin_keeps_every_word_in_order(lines: list[str]) -> None:
    words = [w for line in lines for w in line.split()]
    assert rejoin_lines(lines).split() == words


@given(
    st.lists(
        st.lists(
            st.sampled_from(["Header", "page 1", "page 2", "Body", "Text 7", "x"]), max_size=6
        ),
        max_size=8,
    )
)
def test_running_line_removal_only_trims_page_edges(pages: list[list[str]]) -> None:
    for before, after in zip(pages, remove_running_lines(pages), strict=True):
        assert any(
            before[start : len(before) - cut] == after for start in range(3) for cut in range(3)
        )


# ------------------------------------------------------------------ text, Markdown, CSV


def test_markdown_is_one_page_with_normalised_newlines() -> None:
    data = "# Título\r\n\r\n\r\n\r\nLes **élèves** — 学生.   \r\n- item\r\n".encode()
    assert text_pages(data, FileKind.MARKDOWN) == [
        Page(1, "# Título\n\nLes **élèves** — 学生.\n- item")
    ]


def test_csv_rows_become_labelled_lines() -> None:
    data = b"\xef\xbb\xbfname;formula;mass\nwater;H2O;18.015\nethanol;C2H6O;\n"
    assert text_pages(data, FileKind.CSV) == [
        Page(
            1,
            "Row 2: name: water; formula: H2O; mass: 18.015\nRow 3: name: ethanol; formula: C2H6O",
        )
    ]


async def test_text_errors_are_typed() -> None:
    with pytest.raises(BadRequest) as info:
        await extract_pages(b"caf\xe9", FileKind.TEXT)
    assert info.value.code == "not_utf8"
    with pytest.raises(BadRequest) as info:
        await extract_pages(b"  \n\n ", FileKind.TEXT)
    assert info.value.code == "no_text"


# ------------------------------------------------------------------ bombs: bounded while produced


async def test_the_amplifying_csv_fails_too_large_at_its_first_label() -> None:
    started = time.monotonic()
    with pytest.raises(BadRequest) as info:
        await extract_pages(amplifying_csv(), FileKind.CSV)
    assert info.value.code == "too_large"
    assert info.value.details == {"max_label_chars": 1000, "column": 1}
    assert time.monotonic() - started < 10


async def test_a_50_mb_one_line_text_stops_at_the_character_cap() -> None:
    started = time.monotonic()
    with pytest.raises(BadRequest) as info:
        await extract_pages(b"x" * 50_000_000, FileKind.TEXT)
    assert info.value.code == "too_large" and info.value.details == {"max_chars": 20_000_000}
    assert time.monotonic() - started < 15


async def test_deeply_nested_markdown_fails_too_large() -> None:
    with pytest.raises(BadRequest) as info:
        await extract_pages(nested_markdown(), FileKind.MARKDOWN)
    assert info.value.code == "too_large" and info.value.details == {"max_depth": 64, "line": 1}
    for deep in ("(" * 65 + "x", "    " * 65 + "code", "> " * 65 + "quote"):
        with pytest.raises(BadRequest):
            await extract_pages(deep.encode(), FileKind.MARKDOWN)
    ordinary = "> quoted\n> > twice\n\n- a\n    - b\n        - c [link](http://x.test/(y))\n"
    assert (await extract_pages(ordinary.encode(), FileKind.MARKDOWN))[0].text.startswith("> quoted")


@pytest.mark.parametrize(
    ("limits", "detail"),
    [
        (ExtractionLimits(max_rows=100), {"max_rows": 100}),
        (ExtractionLimits(max_cells=150), {"max_cells": 150}),
        (ExtractionLimits(max_chars=1000), {"max_chars": 1000}),
    ],
    ids=["rows", "cells", "chars"],
)
async def test_csv_limits_are_checked_row_by_row(limits: ExtractionLimits, detail: dict[str, int]) -> None:
    data = ("name,value\n" + "".join(f"item {n},{n}\n" for n in range(500))).encode()
    with pytest.raises(BadRequest) as info:
        await extract_pages(data, FileKind.CSV, limits)
    assert info.value.code == "too_large" and info.value.details == detail
    assert (await extract_pages(data, FileKind.CSV))[0].text.count("\n") == 499


def test_a_cell_past_the_csv_field_limit_is_too_large() -> None:
    with pytest.raises(BadRequest) as info:
        text_pages(b"a,b\n" + b"x" * 200_000 + b",y\n", FileKind.CSV)
    assert info.value.code == "too_large"


async def test_text_kinds_run_under_the_child_memory_limit() -> None:
    limits = ExtractionLimits(memory_bytes=150 << 20, max_chars=1 << 40)
    with pytest.raises(BadRequest) as info:
        await extract_pages(b"y" * 50_000_000, FileKind.TEXT, limits)
    assert info.value.code == "too_large" and "memory" in info.value.message
    assert (await extract_pages(b"small notes", FileKind.TEXT, limits))[0].text == "small notes"



SMALL = ExtractionLimits(max_chars=400, max_rows=12, max_cells=300, max_label_chars=20, max_depth=5)
CSVISH = st.text(alphabet=st.sampled_from(list('a,,,,,;"\n x>-([')), max_size=600)


@given(CSVISH, st.sampled_from([FileKind.CSV, FileKind.MARKDOWN, FileKind.TEXT]))
def test_output_never_passes_the_limits(text: str, kind: FileKind) -> None:
    """Whatever the input, extraction answers text within the character cap or a typed refusal."""
    try:
        pages = bounded_text_pages(text.encode(), kind, SMALL)
    except BadRequest as err:
        assert err.code in {"too_large", "corrupt_csv"}, err.code
        return
    assert len(pages) == 1 and len(pages[0].text) <= SMALL.max_chars
    if kind is FileKind.CSV:
        assert pages[0].text.count("\n") < SMALL.max_rows


def test_a_header_of_empty_labels_is_counted_too() -> None:
    """Empty labels are named "column N", so a header alone can be longer than its file."""
    with pytest.raises(BadRequest) as info:
        bounded_text_pages(b"a" + b"," * 200 + b"\n", FileKind.CSV, SMALL)
    assert info.value.code == "too_large" and info.value.details == {"max_chars": 400}

"""Upload sniffing by magic bytes, and file name sanitising."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.errors import UnsupportedMediaType
from roomserver.library.sniff import FileKind, sanitize_filename, sniff
from tests.pdfs import simple_pdf

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(20)
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(30)
ELF = b"\x7fELF\x02\x01\x01" + bytes(50)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
PROSE = "Enzymes lower the activation energy, which speeds reactions.\nThey are proteins.\n"
MARKDOWN = (
    "# Cell biology\n\nThe **mitochondrion** is the [powerhouse](https://x.org).\n\n- ATP\n- NADH\n"
)
CSV = "name,formula,mass\nwater,H2O,18.015\nethanol,C2H6O,46.07\nglucose,C6H12O6,180.16\n"


def test_a_real_pdf_is_a_pdf_whatever_its_name() -> None:
    pdf = simple_pdf(["Hello"])
    for name in ("paper.pdf", "paper.txt", None):
        result = sniff(pdf, name)
        assert result.kind is FileKind.PDF
        assert result.content_type == "application/pdf"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (PNG, "image/png"),
        (ZIP, "application/zip"),
        (ELF, "application/x-executable"),
        (JPEG, "image/jpeg"),
    ],
)
@pytest.mark.parametrize("name", ["paper.pdf", "notes.txt", None])
def test_binary_formats_are_refused_even_under_a_friendly_name(
    data: bytes, detected: str, name: str | None
) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        sniff(data, name)
    assert info.value.code == "unsupported_type"
    assert info.value.status == 415
    assert info.value.details["detected"] == detected


def test_text_bytes_named_pdf_are_refused() -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        sniff(b"This is not a PDF at all, just words.\n", "thesis.pdf", complete=True)
    assert info.value.code == "unsupported_type"


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 4,
        "Café crème in Latin-1".encode("latin-1"),
        b"text with a NUL \x00 inside",
        b"\x01\x02\x03\x04\x05\x06 control soup \x07\x08\x0e\x0f",
    ],
)
def test_binary_or_non_utf8_is_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        sniff(data, "notes.txt", complete=True)


@pytest.mark.parametrize(
    ("data", "name", "kind"),
    [
        (PROSE, "notes.txt", FileKind.TEXT),
        (PROSE, None, FileKind.TEXT),
        (PROSE, "notes.md", FileKind.MARKDOWN),
        (MARKDOWN, "notes.txt", FileKind.MARKDOWN),
        (MARKDOWN, None, FileKind.MARKDOWN),
        (CSV, "elements.csv", FileKind.CSV),
        (CSV, None, FileKind.CSV),
        (PROSE, "elements.csv", FileKind.TEXT),
        ("Ελληνικά, 日本語, emoji 🧪\n", "unicode.txt", FileKind.TEXT),
        ("\ufeffWith a byte order mark\n", "bom.txt", FileKind.TEXT),
    ],
)
def test_text_kinds(data: str, name: str | None, kind: FileKind) -> None:
    assert sniff(data.encode(), name, complete=True).kind is kind


def test_utf8_cut_at_the_end_of_the_head_is_tolerated_unless_complete() -> None:
    head = ("α" * 100).encode()[:-1]  # noqa: RUF001
    assert sniff(head, "greek.txt").kind is FileKind.TEXT
    with pytest.raises(UnsupportedMediaType):
        sniff(head, "greek.txt", complete=True)


@given(st.binary(max_size=512), st.one_of(st.none(), st.text(max_size=30)))
def test_sniff_answers_a_kind_or_a_typed_refusal(data: bytes, name: str | None) -> None:
    try:
        result = sniff(data, name)
    except UnsupportedMediaType as err:
        assert err.code == "unsupported_type"
    else:
        assert isinstance(result.kind, FileKind)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\Report 2024.pdf", "Report 2024.pdf"),
        ("evil\x00name\r\n.txt", "evilname.txt"),
        ("...hidden", "hidden"),
        ("", "file"),
        ("/", "file"),
        ("Résumé – final.pdf", "Résumé _ final.pdf"),  # noqa: RUF001
        ("a<b>c:d|e?.md", "a_b_c_d_e_.md"),
    ],
)
def test_sanitize_filename_examples(raw: str, clean: str) -> None:
    assert sanitize_filename(raw) == clean


def test_sanitize_keeps_the_extension_of_long_names() -> None:
    name = sanitize_filename("x" * 500 + ".pdf")
    assert len(name) == 120 and name.endswith(".pdf")


@given(st.text(max_size=300))
def test_sanitized_names_are_safe(raw: str) -> None:
    name = sanitize_filename(raw)
    assert 0 < len(name) <= 120
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and name not in ("..", ".")
    assert all(ch.isprintable() for ch in name)
    assert sanitize_filename(name) == name

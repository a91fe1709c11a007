"""Decide an upload's type from its bytes (the declared type is ignored) and clean its name.

Accepted: PDF, plain text, Markdown, CSV (the last three as UTF-8 text). Everything else
raises UnsupportedMediaType(code="unsupported_type") with `details.detected` naming what
the bytes look like. The file name's extension is only a hint between the text kinds, except
that a name promising a binary format (".pdf", ".png", ...) the bytes do not match is refused.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from roomserver.errors import UnsupportedMediaType

SNIFF_BYTES = 64 * 1024  # how much of the head `sniff` needs


class FileKind(StrEnum):
    PDF = "pdf"
    TEXT = "text"
    MARKDOWN = "markdown"
    CSV = "csv"


CONTENT_TYPES = {
    FileKind.PDF: "application/pdf",
    FileKind.TEXT: "text/plain; charset=utf-8",
    FileKind.MARKDOWN: "text/markdown; charset=utf-8",
    FileKind.CSV: "text/csv; charset=utf-8",
}


@dataclass(frozen=True)
class Sniffed:
    kind: FileKind
    content_type: str


# magic prefix -> what it is; all refused.
REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"RIFF", "application/riff"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"\x7fELF", "application/x-executable"),
    (b"MZ", "application/x-msdownload"),
    (b"\xca\xfe\xba\xbe", "application/java-vm"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (b"%!PS", "application/postscript"),
    (b"{\\rtf", "application/rtf"),
    (b"\x00asm", "application/wasm"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
)
BINARY_EXTENSIONS = {
    "pdf", "png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff", "zip", "gz", "tgz",
    "bz2", "xz", "7z", "rar", "exe", "dll", "so", "bin", "docx", "xlsx", "pptx", "doc",
    "xls", "ppt", "odt", "epub", "mp3", "mp4", "wav", "ogg", "avi", "mov", "sqlite", "db",
}  # fmt: skip
MARKDOWN_EXTENSIONS = {"md", "markdown", "mdown", "mkd"}
CSV_EXTENSIONS = {"csv", "tsv"}
MARKDOWN_LINE = re.compile(r"^(#{1,6} \S|```|~~~|> \S|[-*+] \S|\d+\. \S|\|.*\|\s*$)")
MARKDOWN_INLINE = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)|\*\*[^*\n]+\*\*|`[^`\n]+`")


def sniff(head: bytes, filename: str | None = None, *, complete: bool = False) -> Sniffed:
    """Classify an upload from its first bytes (pass at least SNIFF_BYTES when available).

    `complete=True` says `head` is the whole file; otherwise a UTF-8 sequence cut at the end
    of `head` is tolerated.
    """
    ext = extension(filename)
    if _is_pdf(head):
        return Sniffed(FileKind.PDF, CONTENT_TYPES[FileKind.PDF])
    for magic, detected in REFUSED_MAGIC:
        if head.startswith(magic):
            raise _refuse(detected, filename)
    text = _as_text(head, complete)
    if text is None:
        raise _refuse("application/octet-stream", filename)
    if ext in BINARY_EXTENSIONS:
        raise _refuse("text/plain", filename, reason=f"the content is not a .{ext} file")
    kind = _text_kind(text, ext)
    return Sniffed(kind, CONTENT_TYPES[kind])


def extension(filename: str | None) -> str:
    """The lower-case extension of a file name without the dot, or ""."""
    if not filename or "." not in filename:
        return ""
    return filename.rsplit(".", 1)[1].strip().lower()


def _is_pdf(head: bytes) -> bool:
    # The PDF header may follow some junk bytes; readers look within the first 1 KiB.
    return b"%PDF-" in head[:1024]


def _as_text(head: bytes, complete: bool) -> str | None:
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if complete or err.start < len(head) - 3:
            return None
        text = head[: err.start].decode("utf-8")
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
    if controls > max(2, len(text) // 100):
        return None
    return text


def _text_kind(text: str, ext: str) -> FileKind:
    if ext in CSV_EXTENSIONS:
        return FileKind.CSV if _looks_like_csv(text, min_rows=2) else FileKind.TEXT
    if ext in MARKDOWN_EXTENSIONS or _looks_like_markdown(text):
        return FileKind.MARKDOWN
    if ext == "" and _looks_like_csv(text, min_rows=3):
        return FileKind.CSV
    return FileKind.TEXT


def _looks_like_markdown(text: str) -> bool:
    lines = [line for line in text.splitlines()[:200] if line.strip()]
    if not lines:
        return False
    marked = sum(1 for line in lines if MARKDOWN_LINE.match(line))
    inline = len(MARKDOWN_INLINE.findall(text[:20000]))
    has_heading = any(line.startswith("#") and MARKDOWN_LINE.match(line) for line in lines)
    return (has_heading and marked + inline >= 2) or marked + inline >= max(3, len(lines) // 5)


def _looks_like_csv(text: str, min_rows: int) -> bool:
    """At least `min_rows` rows, all (but a cut last one) with the same number (>= 2) of fields."""
    lines = text.splitlines()[:50]
    if len(lines) > 2:
        lines = lines[:-1]  # the last line may be cut by the head
    lines = [line for line in lines if line.strip()]
    if len(lines) < min_rows:
        return False
    for delimiter in (",", ";", "\t", "|"):
        try:
            widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:
            continue
        if len(widths) == 1 and widths.pop() >= 2:
            return True
    return False


def _refuse(detected: str, filename: str | None, reason: str = "") -> UnsupportedMediaType:
    message = reason or "only PDF, plain text, Markdown and CSV files are accepted"
    return UnsupportedMediaType(
        message,
        code="unsupported_type",
        details={"detected": detected, "filename": sanitize_filename(filename or "")},
    )


UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ()\[\],+&'@]+")


def sanitize_filename(name: str, max_length: int = 120) -> str:
    """A display-safe file name: no directories, control or path characters, NFC, bounded.

    Never empty: returns "file" when nothing usable is left. The result is for display and
    Content-Disposition only; stored files are named by generated ids, never by this.
    """
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = UNSAFE_NAME_CHARS.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if len(name) > max_length:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: max_length - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:max_length].rstrip(" .")
    return name or "file"

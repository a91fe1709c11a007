"""Text extraction: document bytes -> pages of clean text, `[Page(number, text)]`.

Every kind (PDF, text, Markdown, CSV) is read in a child process (`python -I -c ...` running
`_child_main`) with limits on address space, CPU time and wall time, and an environment
without the server's secrets, so no upload can stall or exhaust the server process. Inside
the child the same `ExtractionLimits` bound the output while it is produced (never after):
extracted characters, PDF pages, CSV rows, cells and header-label length, Markdown nesting
depth. The caller only ever sees the pages or a BadRequest whose code names the reason:

    too_large            a limit on the output was hit (characters, pages, rows, cells,
                         label length, nesting depth, or the child's memory/CPU on a text kind)
    corrupt_pdf          the file is not a readable PDF (or the reader crashed)
    encrypted_pdf        the PDF needs a password
    pdf_too_complex      the PDF reader hit a resource limit (decompression bomb, deep
                         nesting, memory, CPU)
    extraction_timeout   the wall-time limit passed
    extraction_failed    the child died on a text kind for another reason
    not_utf8             a text kind that is not UTF-8
    corrupt_csv          a CSV the csv module cannot read
    no_text              no page has extractable text (e.g. a scan without OCR)

PDF text is cleaned: running headers/footers dropped, hyphenated and wrapped lines rejoined
into paragraphs (separated by a blank line), ligatures expanded, NFC. Text and Markdown are
one page; CSV is one page with a line per row, cells labelled by the header.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
import signal
import statistics
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roomserver.errors import BadRequest
from roomserver.library.sniff import FileKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    number: int  # 1-based
    text: str


@dataclass(frozen=True)
class ExtractionLimits:
    memory_bytes: int = 1 << 30  # address space of the child (Python + pypdf need ~100 MB)
    cpu_seconds: int = 60
    wall_seconds: float = 120.0
    max_pages: int = 5000
    max_chars: int = 20_000_000  # extracted characters of the whole document
    max_rows: int = 200_000  # CSV rows
    max_cells: int = 2_000_000  # CSV cells, all rows together
    max_label_chars: int = 1000  # one CSV header label
    max_depth: int = 64  # Markdown nesting: block quotes, list levels, brackets on a line


def too_large(message: str, **details: object) -> BadRequest:
    return BadRequest(message, code="too_large", details=dict(details))


async def extract_pages(
    data: bytes, kind: FileKind, limits: ExtractionLimits = ExtractionLimits()
) -> list[Page]:
    """Pages of clean text of a document whose kind `sniff` decided, read in the limited
    child. Never blocks the loop."""
    pages = await run_child(data, kind, limits)
    if not any(page.text.strip() for page in pages):
        raise BadRequest("the document has no extractable text", code="no_text")
    return pages


async def extract_pdf(data: bytes, limits: ExtractionLimits = ExtractionLimits()) -> list[Page]:
    """A PDF's pages (see `run_child`)."""
    return await run_child(data, FileKind.PDF, limits)


# ---------------------------------------------------------------- parent side


async def run_child(data: bytes, kind: FileKind, limits: ExtractionLimits) -> list[Page]:
    """Run the extraction child under `limits`; kill it on timeout or cancellation."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _CHILD_BOOT, _package_parent(),
        kind.value, json.dumps(dataclasses.asdict(limits)),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_child_env(),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), limits.wall_seconds)
    except TimeoutError:
        raise BadRequest(
            f"extraction took longer than {limits.wall_seconds:g} s", code="extraction_timeout"
        ) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return await asyncio.to_thread(_child_result, kind, proc.returncode, out, err)


# -I keeps PYTHON* variables, the user's site-packages and the working directory out of
# the child's path; our package's parent directory is added explicitly.
_CHILD_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from roomserver.library.extract import _child_main; _child_main(sys.argv[2:])"
)


def _package_parent() -> str:
    return str(Path(__file__).resolve().parents[2])


def _child_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def _child_result(kind: FileKind, returncode: int | None, out: bytes, err: bytes) -> list[Page]:
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if returncode == 0 and isinstance(answer, dict) and "pages" in answer:
        return [Page(int(n), str(text)) for n, text in answer["pages"]]
    if isinstance(answer, dict) and "error" in answer:
        error = answer["error"]
        raise BadRequest(str(error["message"]), code=str(error["code"]),
                         details=dict(error.get("details") or {}))
    log.warning("extraction child (%s) exited with %s: %s", kind.value, returncode,
                err[-2000:].decode(errors="replace"))
    limited = returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    if kind is FileKind.PDF:
        if limited:
            raise BadRequest("the PDF needs too much CPU time to read", code="pdf_too_complex")
        raise BadRequest("the PDF reader failed on this file", code="corrupt_pdf")
    if limited:
        raise too_large("the file needs too much CPU time to read")
    raise BadRequest("reading the file failed", code="extraction_failed")


# ---------------------------------------------------------------- child side


def _child_main(argv: Sequence[str]) -> None:
    """Entry point of the child: limits first, then read stdin, answer JSON on stdout."""
    kind, limits = FileKind(argv[0]), ExtractionLimits(**json.loads(argv[1]))
    _apply_limits(limits.memory_bytes, limits.cpu_seconds)
    data = sys.stdin.buffer.read()
    try:
        answer: dict[str, object] = {"pages": _read(data, kind, limits)}
    except BadRequest as err:
        answer = {"error": {"code": err.code, "message": err.message, "details": err.details}}
    sys.stdout.buffer.write(json.dumps(answer, ensure_ascii=False).encode())
    sys.stdout.flush()


def _read(data: bytes, kind: FileKind, limits: ExtractionLimits) -> list[tuple[int, str]]:
    if kind is FileKind.PDF:
        return _read_pdf(data, limits.max_pages, limits.max_chars)
    try:
        pages = bounded_text_pages(data, kind, limits)
    except MemoryError:
        raise too_large("the file needs too much memory to read") from None
    except RecursionError:
        raise too_large("the file is nested too deeply") from None
    return [(page.number, page.text) for page in pages]


def _apply_limits(memory: int, cpu: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # the child writes no files
    os.nice(5)


def _read_pdf(data: bytes, max_pages: int, max_chars: int) -> list[tuple[int, str]]:
    try:
        raw = _pypdf_text(data, max_pages, max_chars)
    except BadRequest:
        raise
    except MemoryError:
        raise BadRequest("the PDF needs too much memory to read", code="pdf_too_complex") from None
    except RecursionError:
        raise BadRequest("the PDF is nested too deeply", code="pdf_too_complex") from None
    except Exception as err:
        raise _classify(err) from None
    return [(page.number, page.text) for page in clean_pdf_pages(raw)]


def _pypdf_text(data: bytes, max_pages: int, max_chars: int) -> list[str]:
    import logging as _logging

    from pypdf import PdfReader

    _logging.getLogger("pypdf").setLevel(_logging.ERROR)
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise BadRequest("the PDF is protected by a password", code="encrypted_pdf")
    if len(reader.pages) > max_pages:
        raise too_large(f"the PDF has more than {max_pages} pages", max_pages=max_pages)
    texts, total = [], 0
    for page in reader.pages:
        text = page.extract_text() or ""
        total += len(text)
        if total > max_chars:
            raise too_large(f"the PDF has more than {max_chars} characters", max_chars=max_chars)
        texts.append(text)
    return texts


def _classify(err: Exception) -> BadRequest:
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    chain = {type(e) for e in (err, err.__cause__, err.__context__) if e is not None}
    if RecursionError in chain:
        return BadRequest("the PDF is nested too deeply", code="pdf_too_complex")
    if MemoryError in chain:
        return BadRequest("the PDF needs too much memory to read", code="pdf_too_complex")
    if isinstance(err, LimitReachedError):
        return BadRequest("the PDF expands beyond the size limit", code="pdf_too_complex")
    if isinstance(err, FileNotDecryptedError | DependencyError):
        return BadRequest(
            "the PDF is encrypted in a way that cannot be opened", code="encrypted_pdf"
        )
    return BadRequest(f"the file is not a readable PDF ({type(err).__name__})", code="corrupt_pdf")


# ---------------------------------------------------------------- cleaning PDF text

LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
)
EDGE_LINES = 2  # how many lines at each end of a page may be a running header/footer
BULLET = re.compile(r"^([•·▪‣◦\-*–]|\d+[.)]|[a-z][.)])\s")  # noqa: RUF001
SENTENCE_END = re.compile(r"[.!?:;][\"'”’)\]]*$")  # noqa: RUF001


def clean_pdf_pages(raw_pages: Sequence[str]) -> list[Page]:
    """Pages numbered from 1, without running headers/footers, lines rejoined."""
    lines = [_normalise(text).split("\n") for text in raw_pages]
    lines = [[line.strip() for line in page if line.strip()] for page in lines]
    lines = remove_running_lines(lines)
    return [Page(n, rejoin_lines(page)) for n, page in enumerate(lines, start=1)]


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text.translate(LIGATURES))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def _signature(line: str) -> str:
    """A line with its numbers blanked, so 'page 3 of 9' and 'page 4 of 9' match."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", line.lower())).strip()


def remove_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Drop lines among the first/last EDGE_LINES of a page that repeat (numbers aside)
    at that end on at least half of the pages (and on at least two)."""
    if len(pages) < 2:
        return pages
    need = max(2, math.ceil(len(pages) / 2))
    tops = Counter(s for page in pages for s in {_signature(x) for x in page[:EDGE_LINES]})
    bottoms = Counter(s for page in pages for s in {_signature(x) for x in page[-EDGE_LINES:]})
    top = {s for s, count in tops.items() if count >= need}
    bottom = {s for s, count in bottoms.items() if count >= need}
    cleaned = []
    for page in pages:
        start, end = 0, len(page)
        while start < min(EDGE_LINES, end) and _signature(page[start]) in top:
            start += 1
        while end > max(start, len(page) - EDGE_LINES) and _signature(page[end - 1]) in bottom:
            end -= 1
        cleaned.append(page[start:end])
    return cleaned


def rejoin_lines(lines: Sequence[str]) -> str:
    """Paragraphs from wrapped lines: hyphenated words rejoined, blank line between paragraphs.

    A paragraph ends after a blank line, before a bullet, or after a line clearly shorter
    than the page's usual width that ends a sentence or is followed by a capital (a title)."""
    if not lines:
        return ""
    width = _typical_width(lines)
    paragraphs: list[list[str]] = []
    previous = ""
    for line in lines:
        if not line:
            previous = ""
            continue
        if not previous or _breaks(previous, line, width):
            paragraphs.append([line])
        elif _hyphenated(previous, line):
            paragraphs[-1][-1] = paragraphs[-1][-1][:-1] + line
        else:
            paragraphs[-1].append(line)
        previous = line
    return "\n\n".join(" ".join(p).replace("\u00ad", "") for p in paragraphs)


def _hyphenated(previous: str, line: str) -> bool:
    return (
        len(previous) > 1
        and previous[-1] in "-\u00ad"
        and previous[-2].isalpha()
        and line[0].islower()
    )


def _breaks(previous: str, line: str, width: float) -> bool:
    if BULLET.match(line):
        return True
    short = len(previous) < 0.7 * width
    if short and SENTENCE_END.search(previous):
        return True
    return short and len(previous) < 0.5 * width and line[0].isupper() and previous[-1] not in ",-"


def _typical_width(lines: Sequence[str]) -> float:
    lengths = sorted(len(line) for line in lines if line)
    if len(lengths) < 3:
        return float(max(lengths, default=0)) or 1.0
    return float(statistics.quantiles(lengths, n=10)[7])  # 80th percentile


# ---------------------------------------------------------------- text, Markdown, CSV

DECODE_PIECE = 1 << 20


def text_pages(data: bytes, kind: FileKind) -> list[Page]:
    """`bounded_text_pages` under the default limits (runs in the calling process)."""
    return bounded_text_pages(data, kind, ExtractionLimits())


def bounded_text_pages(data: bytes, kind: FileKind, limits: ExtractionLimits) -> list[Page]:
    """One page for UTF-8 text, Markdown or CSV; BadRequest `not_utf8`, `too_large` or
    `corrupt_csv`. Decoding stops as soon as the text passes `limits.max_chars`."""
    text = _normalise(decode_bounded(data, limits.max_chars))
    if kind is FileKind.CSV:
        return [Page(1, csv_text(text, limits))]
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    if kind is FileKind.MARKDOWN:
        check_markdown_depth(text, limits.max_depth)
    return [Page(1, re.sub(r"\n{3,}", "\n\n", text).strip("\n"))]


def decode_bounded(data: bytes, max_chars: int) -> str:
    """UTF-8 (with or without BOM) decoded piece by piece, refused past `max_chars`."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    parts, total = [], 0
    try:
        for start in range(0, len(data), DECODE_PIECE):
            piece = data[start : start + DECODE_PIECE]
            parts.append(decoder.decode(piece, final=start + DECODE_PIECE >= len(data)))
            total += len(parts[-1])
            if total > max_chars:
                raise too_large(f"the text has more than {max_chars} characters", max_chars=max_chars)
    except UnicodeDecodeError:
        raise BadRequest("the file is not valid UTF-8 text", code="not_utf8") from None
    return "".join(parts)


MARKDOWN_OPENER = re.compile(r" {0,3}(?:>|[-*+] |\d{1,9}[.)] )")


def check_markdown_depth(text: str, max_depth: int) -> None:
    """`too_large` when a line nests more than `max_depth` levels: block quotes, list
    markers and indentation at its start, or brackets open at once within it."""
    for number, line in enumerate(text.split("\n"), start=1):
        if _line_depth(line, max_depth) > max_depth:
            raise too_large(f"line {number} is nested more than {max_depth} levels deep",
                            max_depth=max_depth, line=number)


def _line_depth(line: str, max_depth: int) -> int:
    depth, position = 0, 0
    while depth <= max_depth:
        indent = len(line) - position - len(line[position:].lstrip(" "))
        if indent >= 4:  # an indented level (nested list or code)
            depth, position = depth + 1, position + 4
            continue
        found = MARKDOWN_OPENER.match(line, position)
        if found is None:
            break
        depth, position = depth + 1, found.end()
    brackets = deepest = 0
    for ch in line:
        if ch in "[(":
            brackets += 1
            deepest = max(deepest, brackets)
        elif ch in "])" and brackets:
            brackets -= 1
    return max(depth, deepest)


def csv_text(text: str, limits: ExtractionLimits | None = None) -> str:
    """Rows as readable lines: 'Row 2: name: water; formula: H2O'. Row 1 is the header.

    `too_large` as soon as the rows, cells, a header label or the output pass `limits`."""
    limits = limits or ExtractionLimits()
    reader = csv.reader(io.StringIO(text), dialect=_dialect(text))
    budget = _CsvBudget(limits)
    header: list[str] | None = None
    lines: list[str] = []
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            budget.row(row)
            if header is None:
                header = [_label(cell, i, limits) for i, cell in enumerate(row)]
                continue
            line = _csv_line(header, row, budget.rows)
            budget.output(len(line) + 1)
            lines.append(line)
    except csv.Error as err:
        if "field limit" in str(err):
            raise too_large("a CSV cell is longer than the csv reader's field limit") from None
        raise BadRequest(f"the CSV cannot be read ({err})", code="corrupt_csv") from None
    if header is None:
        return ""
    if lines:
        return "\n".join(lines)
    only_header = "; ".join(header)  # empty labels became "column N": longer than the input
    budget.output(len(only_header))
    return only_header


def _label(cell: str, index: int, limits: ExtractionLimits) -> str:
    label = cell.strip() or f"column {index + 1}"
    if len(label) > limits.max_label_chars:
        raise too_large(f"CSV header label {index + 1} is longer than {limits.max_label_chars} characters",
                        max_label_chars=limits.max_label_chars, column=index + 1)
    return label


def _csv_line(header: Sequence[str], row: Sequence[str], number: int) -> str:
    cells = [
        f"{header[i] if i < len(header) else f'column {i + 1}'}: {cell.strip()}"
        for i, cell in enumerate(row)
        if cell.strip()
    ]
    return f"Row {number}: " + "; ".join(cells)


class _CsvBudget:
    """Running totals of one CSV against the limits; raises `too_large` the moment one passes."""

    def __init__(self, limits: ExtractionLimits) -> None:
        self.limits, self.rows, self.cells, self.chars = limits, 0, 0, 0

    def row(self, row: Sequence[str]) -> None:
        self.rows += 1
        self.cells += len(row)
        if self.rows > self.limits.max_rows:
            raise too_large(f"the CSV has more than {self.limits.max_rows} rows",
                            max_rows=self.limits.max_rows)
        if self.cells > self.limits.max_cells:
            raise too_large(f"the CSV has more than {self.limits.max_cells} cells",
                            max_cells=self.limits.max_cells)

    def output(self, chars: int) -> None:
        self.chars += chars
        if self.chars > self.limits.max_chars:
            raise too_large(f"the CSV's text passes {self.limits.max_chars} characters",
                            max_chars=self.limits.max_chars)


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:20000], delimiters=",;\t|")
    except csv.Error:
        return csv.excel


if __name__ == "__main__":
    _child_main(sys.argv[1:])

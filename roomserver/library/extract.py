"""Text extraction: document bytes -> pages of clean text, `[Page(number, text)]`.

PDFs are parsed by pypdf in a child process (`python -m roomserver.library.extract`) with limits on
address space, CPU time and wall time, and an environment without the server's secrets; the
caller only ever sees the pages or a BadRequest whose code names the reason:

    corrupt_pdf          the file is not a readable PDF (or the reader crashed)
    encrypted_pdf        the PDF needs a password
    pdf_too_complex      a resource limit was hit (decompression bomb, deep nesting, memory,
                         CPU, too many pages or characters)
    extraction_timeout   the wall-time limit passed
    no_text              no page has extractable text (e.g. a scan without OCR)

PDF text is cleaned: running headers/footers dropped, hyphenated and wrapped lines rejoined
into paragraphs (separated by a blank line), ligatures expanded, NFC. Text and Markdown are
one page; CSV is one page with a line per row, cells labelled by the header.
"""

from __future__ import annotations

import asyncio
import csv
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
    max_chars: int = 20_000_000


async def extract_pages(
    data: bytes, kind: FileKind, limits: ExtractionLimits = ExtractionLimits()
) -> list[Page]:
    """Pages of clean text of a document whose kind `sniff` decided. Never blocks the loop."""
    if kind is FileKind.PDF:
        pages = await extract_pdf(data, limits)
    else:
        pages = await asyncio.to_thread(text_pages, data, kind)
    if not any(page.text.strip() for page in pages):
        raise BadRequest("the document has no extractable text", code="no_text")
    return pages


# ---------------------------------------------------------------- PDF, parent side


async def extract_pdf(data: bytes, limits: ExtractionLimits = ExtractionLimits()) -> list[Page]:
    """Run the PDF child under `limits`; kill it on timeout or cancellation."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _CHILD_BOOT, _package_parent(),
        str(limits.memory_bytes), str(limits.cpu_seconds),
        str(limits.max_pages), str(limits.max_chars),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_child_env(),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), limits.wall_seconds)
    except TimeoutError:
        raise BadRequest(
            f"PDF extraction took longer than {limits.wall_seconds:g} s", code="extraction_timeout"
        ) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return _child_result(proc.returncode, out, err)


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


def _child_result(returncode: int | None, out: bytes, err: bytes) -> list[Page]:
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if returncode == 0 and isinstance(answer, dict) and "pages" in answer:
        return [Page(int(n), str(text)) for n, text in answer["pages"]]
    if isinstance(answer, dict) and "error" in answer:
        raise BadRequest(str(answer["error"]["message"]), code=str(answer["error"]["code"]))
    log.warning("PDF child exited with %s: %s", returncode, err[-2000:].decode(errors="replace"))
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise BadRequest("the PDF needs too much CPU time to read", code="pdf_too_complex")
    raise BadRequest("the PDF reader failed on this file", code="corrupt_pdf")


# ---------------------------------------------------------------- PDF, child side


def _child_main(argv: Sequence[str]) -> None:
    """Entry point of the child: limits first, then read stdin, answer JSON on stdout."""
    memory, cpu, max_pages, max_chars = (int(arg) for arg in argv)
    _apply_limits(memory, cpu)
    data = sys.stdin.buffer.read()
    try:
        answer: dict[str, object] = {"pages": _read_pdf(data, max_pages, max_chars)}
    except BadRequest as err:
        answer = {"error": {"code": err.code, "message": err.message}}
    sys.stdout.buffer.write(json.dumps(answer).encode())
    sys.stdout.flush()


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
        raise BadRequest(f"the PDF has more than {max_pages} pages", code="pdf_too_complex")
    texts, total = [], 0
    for page in reader.pages:
        text = page.extract_text() or ""
        total += len(text)
        if total > max_chars:
            raise BadRequest(
                f"the PDF has more than {max_chars} characters", code="pdf_too_complex"
            )
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


def text_pages(data: bytes, kind: FileKind) -> list[Page]:
    """One page for UTF-8 text, Markdown or CSV; BadRequest(code="not_utf8") otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the file is not valid UTF-8 text", code="not_utf8") from None
    text = _normalise(text)
    if kind is FileKind.CSV:
        return [Page(1, csv_text(text))]
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return [Page(1, re.sub(r"\n{3,}", "\n\n", text).strip("\n"))]


def csv_text(text: str) -> str:
    """Rows as readable lines: 'Row 2: name: water; formula: H2O'. Row 1 is the header."""
    rows = [
        row
        for row in csv.reader(io.StringIO(text), dialect=_dialect(text))
        if any(c.strip() for c in row)
    ]
    if not rows:
        return ""
    header = [cell.strip() or f"column {i + 1}" for i, cell in enumerate(rows[0])]
    lines = []
    for number, row in enumerate(rows[1:], start=2):
        cells = [
            f"{header[i] if i < len(header) else f'column {i + 1}'}: {cell.strip()}"
            for i, cell in enumerate(row)
            if cell.strip()
        ]
        lines.append(f"Row {number}: " + "; ".join(cells))
    return "\n".join(lines) if lines else "; ".join(header)


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:20000], delimiters=",;\t|")
    except csv.Error:
        return csv.excel


if __name__ == "__main__":
    _child_main(sys.argv[1:])

"""PDFs made in the tests: a realistic study document, and broken or hostile ones."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import matplotlib
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"

HEADER = "Introduction to Biochemistry — Lecture Notes"
FOOTER = "Université de Genève · Course BIO-101"

# One distinct topic per page so a test can tell which page a passage came from.
TOPICS = [
    (
        "Enzymes",
        "Enzymes are proteins that act as biological catalysts. They lower the activation energy of reactions, which makes them proceed faster at body temperature. Each enzyme binds its substrate at an active site whose shape fits the substrate closely. Heat denatures an enzyme: its folded structure unravels and the active site loses its shape.",
    ),
    (
        "Photosynthesis",
        "Photosynthesis converts light energy into chemical energy stored in glucose. In the light-dependent reactions, chlorophyll absorbs photons near 680 nm and 700 nm and splits water, releasing oxygen. The Calvin cycle then fixes carbon dioxide into sugars using ATP and NADPH.",
    ),
    (
        "Membranes",
        "Cell membranes are phospholipid bilayers with embedded proteins. Small nonpolar molecules diffuse straight through, while ions need channels or pumps. The sodium–potassium pump spends one ATP to move three Na⁺ out and two K⁺ in, keeping the resting potential near −70 mV.",  # noqa: RUF001
    ),
    (
        "Genetics",
        "DNA stores hereditary information as a sequence of four bases. During transcription, RNA polymerase copies a gene into messenger RNA, which ribosomes translate into a chain of amino acids. Mutations that change a codon may alter the protein, sometimes with grave consequences.",
    ),
    (
        "Respiration",
        "Cellular respiration oxidises glucose to carbon dioxide and water. Glycolysis happens in the cytosol; the citric acid cycle and oxidative phosphorylation in the mitochondria. The electron transport chain pumps protons, and ATP synthase uses that gradient to make most of the cell's ATP — about thirty molecules per glucose.",
    ),
]


class _StudyPDF(FPDF):
    def header(self) -> None:
        self.set_font("DejaVu", size=9)
        self.cell(0, 8, HEADER, align="C", new_x="LMARGIN", new_y="NEXT")
        self.ln(4)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("DejaVu", size=9)
        self.cell(0, 8, f"{FOOTER} — page {self.page_no()} of {{nb}}", align="C")


def study_pdf(topics: list[tuple[str, str]] = TOPICS) -> bytes:
    """One page per topic: running header and footer (with page numbers), two text
    columns, Unicode text. The topic's paragraph is written twice so each column is filled."""
    pdf = _StudyPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_auto_page_break(auto=True, margin=20)
    for title, body in topics:
        pdf.add_page()
        pdf.set_font("DejaVu", size=14)
        pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", size=11)
        with pdf.text_columns(ncols=2, gutter=8, text_align="L") as cols:
            cols.write(text=body)
            cols.ln()
            cols.ln()
            cols.write(text="In summary: " + body)
            cols.new_column()
            cols.write(text=f"Review of {title.lower()}: " + body)
    return bytes(pdf.output())


def simple_pdf(pages: list[str]) -> bytes:
    """A plain PDF with one text block per page."""
    pdf = FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def encrypted_pdf(user_password: str = "s3cret") -> bytes:
    """A PDF that needs a password to open (RC4, which pypdf handles without extra packages)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(simple_pdf(["Top secret notes"]))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def corrupt_pdf() -> bytes:
    """A PDF header followed by garbage."""
    return b"%PDF-1.7\n" + bytes((i * 37 + 11) % 256 for i in range(4000)) + b"\n%%EOF\n"


def truncated_pdf() -> bytes:
    """A real PDF cut off before its page content and cross-reference table."""
    return simple_pdf(["A page that will be cut off."])[:400]


def _raw_pdf(objects: list[bytes]) -> bytes:
    """Assemble numbered objects (1..n, object 1 the catalog) into a PDF with a valid xref."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def _page_pdf(content: bytes, filters: bytes = b"") -> bytes:
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d %s>>\nstream\n" % (len(content), filters) + content + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def decompression_bomb_pdf(expanded_bytes: int = 128 << 20) -> bytes:
    """A page whose content stream is a small zlib stream of spaces that inflates to
    `expanded_bytes` (128 MiB from ~130 KB by default: past pypdf's own 75 MB cap)."""
    compressor = zlib.compressobj(9)
    block = b" " * (1 << 20)
    parts = [compressor.compress(b"BT /F1 12 Tf 72 712 Td (boom) Tj ET\n")]
    for _ in range(expanded_bytes // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return _page_pdf(b"".join(parts), b"/Filter /FlateDecode ")


def nested_pdf(depth: int = 200_000) -> bytes:
    """A page whose resources hold arrays nested `depth` levels deep."""
    nested = b"[" * depth + b"]" * depth
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Deep "
            + nested
            + b" >>",
            b"<< /Length 0 >>\nstream\n\nendstream",
        ]
    )


def many_pages_pdf(count: int) -> bytes:
    """`count` pages sharing one content stream (small file, many pages)."""
    kids = b" ".join(b"3 0 R" for _ in range(count))
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length 35 >>\nstream\nBT /F1 12 Tf 72 712 Td (page) Tj ET\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )

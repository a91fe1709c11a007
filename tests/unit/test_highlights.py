"""Locating a highlight's text in a document's pages, whatever the whitespace and page breaks."""

from __future__ import annotations

from roomserver.library.highlights import PagedText, locate
from roomserver.library.models import HighlightDraft


def test_whitespace_and_page_breaks_do_not_matter() -> None:
    paged = PagedText.of(["First page ends with a sentence that", "continues on the second page.  Then more."])
    assert locate(paged, HighlightDraft(text="sentence that\ncontinues on", page=2)) == 2
    assert locate(paged, HighlightDraft(text="sentence that continues", page=1)) == 1
    assert locate(paged, HighlightDraft(text="Then   more.")) == 2

"""What leaves the tutor is cleaned by one function, `sanitize`, streamed or stored.

A model's answer may carry links and images (a prompt-injected document can ask for a tracking
pixel or a `javascript:` link), so nothing from the model reaches a client uncleaned:
`sanitize` drops image markdown, keeps a link's text without its target and replaces bare URLs.
`StreamSanitizer` applies it to a streamed answer: it holds back the text after the last safe
cut (after whitespace, outside any `[`...`](...)` construct) and releases `sanitize` of the rest,
so no link, image or URL can be assembled across two deltas. A construct left open longer than
`hold_max` characters is released cut at whitespace all the same (URLs cannot span whitespace).
"""

from __future__ import annotations

import re

_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*(?:\)|$)")  # an image cut off at the end goes too
_LINK = re.compile(r"\[([^\]]*)\]\(\s*[a-zA-Z][\w+.-]*:[^)]*\)")
_URL = re.compile(r"\b(?:https?|ftp|file|data|javascript):(?://)?[^\s)>\]]+", re.IGNORECASE)


def sanitize(text: str) -> str:
    """No images and no links: image markdown goes, links keep their text, URLs are replaced;
    repeated until nothing changes (a removal can reveal another), so `sanitize` is idempotent."""
    for _ in range(8):
        cleaned = _URL.sub("(link removed)", _LINK.sub(r"\1", _IMAGE.sub("", text)))
        if cleaned == text:
            break
        text = cleaned
    return text


class StreamSanitizer:
    """Feed the model's deltas in order; send what `feed` and finally `flush` return."""

    def __init__(self, hold_max: int = 2000) -> None:
        self.hold_max = hold_max
        self._pending = ""

    def feed(self, piece: str) -> str:
        self._pending += piece
        cut = _safe_cut(self._pending)
        if cut == 0 and len(self._pending) > self.hold_max:
            cut = max(self._pending.rfind(" "), self._pending.rfind("\n")) + 1
        return self._release(cut)

    def flush(self) -> str:
        return self._release(len(self._pending))

    def _release(self, cut: int) -> str:
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return sanitize(out) if out else ""


def _safe_cut(text: str) -> int:
    """The end of the longest prefix that ends in whitespace outside any open `[`...`)`."""
    cut, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "[":
            end = _construct_end(text, i)
            if end is None:
                return cut  # still open: wait for more
            i = end
            continue
        if ch.isspace():
            cut = i + 1
        i += 1
    return cut


def _construct_end(text: str, start: int) -> int | None:
    """Index after `[...]` (or `[...](...)`) starting at `start`; None while it may still grow."""
    close = text.find("]", start + 1)
    if close == -1 or close + 1 >= len(text):
        return None
    if text[close + 1] != "(":
        return close + 1
    paren = text.find(")", close + 2)
    return None if paren == -1 else paren + 1

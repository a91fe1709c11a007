"""What a minted NFT says about itself: the off-chain metadata JSON and the SVG card.

Metadata follows the common NFT JSON shape wallets and explorers read (name, symbol,
description, image, external_url, attributes, properties.files / category). Everything is a
pure function of its inputs (no clock, no randomness), so the same highlight always yields
the same bytes and therefore the same CID. The SVG escapes every piece of user text and
drops characters XML cannot carry.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import orjson

HIGHLIGHT_SYMBOL = "HLIGHT"
ROOM_SYMBOL = "ROOM"
MAX_NAME_CHARS = 32
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class HighlightFacts:
    highlight_id: str
    text: str
    context_before: str
    context_after: str
    page: int | None
    document_id: str
    document_title: str
    room_id: str
    room_name: str
    author_wallet: str


@dataclass(frozen=True)
class RoomFacts:
    room_id: str
    name: str
    description: str
    topic: str | None
    owner_wallet: str


def short(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """One line of at most `limit` characters, with an ellipsis when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def highlight_name(facts: HighlightFacts) -> str:
    return short(f"“{short(facts.text, MAX_NAME_CHARS - 2)}”")


def room_name(facts: RoomFacts) -> str:
    return short(facts.name)


def _xml_text(text: str) -> str:
    return escape(_XML_INVALID.sub("", text), {'"': "&quot;", "'": "&apos;"})


def highlight_svg(facts: HighlightFacts) -> bytes:
    """A 600x400 card: the highlighted passage, then document, page and room."""
    lines = textwrap.wrap(" ".join(facts.text.split()), 44)[:9]
    if len(lines) == 9:
        lines[-1] = short(lines[-1] + " …", 44)
    source = facts.document_title + (f", p. {facts.page}" if facts.page is not None else "")
    spans = "".join(f'<tspan x="40" dy="30">{_xml_text(line)}</tspan>' for line in lines)
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="400" viewBox="0 0 600 400">'
        '<rect width="600" height="400" rx="24" fill="#fdf6e3"/>'
        '<rect x="24" y="24" width="8" height="280" fill="#f5c542"/>'
        f'<text x="40" y="30" font-family="Georgia, serif" font-size="20" fill="#222">{spans}</text>'
        f'<text x="40" y="340" font-family="Helvetica, sans-serif" font-size="14" fill="#555">{_xml_text(short(source, 70))}</text>'
        f'<text x="40" y="366" font-family="Helvetica, sans-serif" font-size="14" fill="#888">{_xml_text(short(facts.room_name, 70))}</text>'
        "</svg>"
    )
    return svg.encode("utf-8")


def room_svg(facts: RoomFacts) -> bytes:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="400" viewBox="0 0 600 400">'
        '<rect width="600" height="400" rx="24" fill="#1e2a44"/>'
        f'<text x="40" y="190" font-family="Helvetica, sans-serif" font-size="34" fill="#fff">{_xml_text(short(facts.name, 30))}</text>'
        f'<text x="40" y="236" font-family="Helvetica, sans-serif" font-size="16" fill="#9fb3d9">{_xml_text(short(facts.topic or "study room", 60))}</text>'
        "</svg>"
    )
    return svg.encode("utf-8")


def _dump(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def highlight_metadata(facts: HighlightFacts, image_uri: str) -> bytes:
    attributes: list[dict[str, Any]] = [
        {"trait_type": "Document", "value": facts.document_title},
        {"trait_type": "Room", "value": facts.room_name},
        {"trait_type": "Highlighted by", "value": facts.author_wallet},
    ]
    if facts.page is not None:
        attributes.insert(1, {"trait_type": "Page", "value": facts.page})
    return _dump({
        "name": highlight_name(facts),
        "symbol": HIGHLIGHT_SYMBOL,
        "description": f"A passage highlighted in “{facts.document_title}” in the study room “{facts.room_name}”.",
        "image": image_uri,
        "attributes": attributes,
        "properties": {
            "category": "image",
            "files": [{"uri": image_uri, "type": "image/svg+xml"}],
            "highlight": {
                "id": facts.highlight_id, "text": facts.text, "context_before": facts.context_before,
                "context_after": facts.context_after, "page": facts.page,
                "document_id": facts.document_id, "document_title": facts.document_title,
                "room_id": facts.room_id,
            },
        },
    })


def room_metadata(facts: RoomFacts, image_uri: str) -> bytes:
    return _dump({
        "name": room_name(facts),
        "symbol": ROOM_SYMBOL,
        "description": facts.description or f"The study room “{facts.name}”.",
        "image": image_uri,
        "attributes": [
            {"trait_type": "Topic", "value": facts.topic or ""},
            {"trait_type": "Owner", "value": facts.owner_wallet},
        ],
        "properties": {
            "category": "image",
            "files": [{"uri": image_uri, "type": "image/svg+xml"}],
            "room": {"id": facts.room_id, "name": facts.name},
        },
    })

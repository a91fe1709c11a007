"""Ingestion bombs: small files whose extracted text would be huge or deeply nested."""

from __future__ import annotations


def amplifying_csv() -> bytes:
    """68 KB that expands x1765 when every cell is labelled by its header: two header labels
    of 30,000 characters, then 2,000 rows of `a,a` (the file measured in operations.md)."""
    return ("L" * 30_000 + "," + "M" * 30_000 + "\n" + "a,a\n" * 2000).encode()


def nested_markdown(depth: int = 100_000) -> bytes:
    """A block quote and a list each nested `depth` levels deep."""
    return (">" * depth + " deep\n\n" + "- " * depth + "item\n").encode()

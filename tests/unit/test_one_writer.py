"""One durable writer: only `roomserver/realtime/history.py` writes room events or room seqs."""

from __future__ import annotations

import re
from pathlib import Path

import roomserver

WRITES = re.compile(r"(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+room_events\b|SET\s+last_seq\b", re.IGNORECASE)
PACKAGE = Path(roomserver.__file__).parent


def writers(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*.py") if WRITES.search(path.read_text())}


def test_history_is_the_only_writer_of_room_events_and_seqs() -> None:
    assert writers(PACKAGE) == {"realtime/history.py"}


def test_the_test_world_writes_through_history_too() -> None:
    tests = Path(__file__).parent.parent
    assert {name for name in writers(tests) if not name.startswith("unit/")} == set()

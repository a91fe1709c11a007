"""The tutor's streamed deltas: whatever the split, what the room is shown carries no link,
image or URL (`sanitize` finds nothing left to remove), and nothing is lost but what it removes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from roomserver.tutor.sanitize import StreamSanitizer, sanitize

WORDS = st.sampled_from(["see", "[notes]", "(x)", "](", ")", "[", "!", "![px](", "https://evil.example/p.gif",
                         "javascript:alert(1)", "java", "script:", "http", "s://e.x/?k=1", "data:", " ", "\n",
                         "[a link](https://evil.example/x)", "ok."])


def stream(pieces: list[str]) -> list[str]:
    cleaner = StreamSanitizer()
    out = [cleaner.feed(p) for p in pieces]
    out.append(cleaner.flush())
    return out


@given(st.lists(WORDS, max_size=30), st.data())
def test_any_split_shows_nothing_sanitize_would_remove(words: list[str], data: st.DataObject) -> None:
    text = "".join(words)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    shown = "".join(stream(pieces))
    assert sanitize(shown) == shown
    assert sanitize(text) == text or shown != text  # something was removed whenever it had to be


def test_a_link_split_across_deltas_is_never_assembled() -> None:
    pieces = ["Read ", "[the notes](java", "script:alert(1)) then ", "![px](https://evil.example/", "p.gif) at http",
              "s://evil.example/x?k=1 now"]
    out = stream(pieces)
    shown = "".join(out)
    assert shown == "Read the notes) then  at (link removed) now" == sanitize("".join(pieces))
    assert not any("evil" in part or "script" in part for part in out)

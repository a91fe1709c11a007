"""The prebuilt text frames of the frame-caching uvicorn protocol (roomserver.api.ws)."""

from __future__ import annotations

from websockets.frames import Frame, Opcode

from roomserver.api.ws import text_frame


def test_text_frame_matches_the_websockets_serializer() -> None:
    for n in (0, 1, 125, 126, 65535, 65536, 70000):
        text = "é" * (n // 2) + "x" * (n % 2)
        expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        assert text_frame(text) == expected

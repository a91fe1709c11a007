"""The AsyncAPI document of the room socket: built from the frame models, and agreeing with
docs/protocol.md's frame lists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from roomserver import protocol
from roomserver.api import asyncapi

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SPEC = asyncapi.build(version="test")


def documented_frames(heading: str) -> list[str]:
    """Frame types in the JSON examples of one `## heading` section of docs/protocol.md."""
    text = DOC.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    return re.findall(r'^\{"type":"(\w+)"', block, re.M)


def operation_frames(name: str) -> list[str]:
    return [ref["$ref"].rsplit("/", 1)[1] for ref in SPEC["operations"][name]["messages"]]


def resolve(ref: str) -> Any:
    node: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_client_frames_agree_with_protocol_md() -> None:
    assert SPEC["operations"]["receiveClientFrames"]["action"] == "receive"
    assert operation_frames("receiveClientFrames") == documented_frames("Client → server")
    assert set(operation_frames("receiveClientFrames")) == protocol.CLIENT_TYPES


def test_server_frames_agree_with_protocol_md() -> None:
    assert SPEC["operations"]["sendServerFrames"]["action"] == "send"
    assert operation_frames("sendServerFrames") == documented_frames("Server → client")
    assert set(operation_frames("sendServerFrames")) == protocol.SERVER_TYPES


def test_every_message_has_its_frame_schema() -> None:
    assert SPEC["asyncapi"] == "3.0.0"
    channel = SPEC["channels"]["room"]
    assert channel["address"] == "/ws/rooms/{room_id}" and "room_id" in channel["parameters"]
    for name, ref in channel["messages"].items():
        message = resolve(ref["$ref"])
        payload = resolve(message["payload"]["$ref"])
        assert message["name"] == name
        assert payload["properties"]["type"]["const"] == name
    for op in SPEC["operations"].values():
        for ref in op["messages"]:
            assert resolve(ref["$ref"])
    chat = resolve("#/components/schemas/ChatMessage")
    assert chat["properties"]["text"]["maxLength"] == 8000


def test_the_served_document_names_the_node() -> None:
    served = asyncapi.with_server(SPEC, "rooms.example.edu", secure=True)
    assert served["servers"]["this"] == {"host": "rooms.example.edu", "protocol": "wss",
                                         "security": [{"$ref": "#/components/securitySchemes/bearer"}]}
    assert served["channels"]["room"]["servers"] == [{"$ref": "#/servers/this"}]
    assert "servers" not in SPEC

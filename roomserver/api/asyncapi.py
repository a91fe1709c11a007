"""The AsyncAPI 3.0 document of the room WebSocket protocol, built from `roomserver.protocol`.

One channel, `/ws/rooms/{room_id}`; one message per frame `type` of the `ClientFrame` and
`ServerFrame` unions, its payload the frame model's JSON schema. The server *receives* client
frames and *sends* server frames (AsyncAPI describes the application's own actions). Built
from the unions themselves, so a new frame model appears here when it joins its union;
tests/unit/test_asyncapi.py checks the frame lists against docs/protocol.md.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from roomserver import protocol

CHANNEL = "room"


def frame_models(union: Any) -> list[type[BaseModel]]:
    """The models of a frame union (bare or `Annotated` with its discriminator), in order."""
    if get_origin(union) is Annotated:
        union = get_args(union)[0]
    return list(get_args(union))


def frame_type(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].default)


def build(*, version: str) -> dict[str, Any]:
    client, server = frame_models(protocol.ClientFrame), frame_models(protocol.ServerFrame)
    _, defs = models_json_schema([(m, "serialization") for m in (*client, *server)],
                                 ref_template="#/components/schemas/{model}")
    messages = {frame_type(m): _message(m) for m in (*client, *server)}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "roomserver room socket", "version": version,
                 "description": "The room WebSocket protocol, subprotocol "
                                f"`{protocol.SUBPROTOCOL}` (docs/protocol.md). Every frame is "
                                "one JSON text message with a `type`; durable events carry the "
                                "room `seq`."},
        "defaultContentType": "application/json",
        "channels": {CHANNEL: {
            "address": "/ws/rooms/{room_id}",
            "title": "A study room",
            "parameters": {"room_id": {"description": "the room's id (a UUID)"}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            "bindings": {"ws": {"query": {
                "type": "object",
                "properties": {"last_seq": {"type": "integer", "minimum": 0,
                                            "description": "replay events after this seq on connect"}}}}},
        }},
        "operations": {
            "receiveClientFrames": _operation("receive", client,
                                              "Frames a client sends; accepted ones are answered with `ack`."),
            "sendServerFrames": _operation("send", server, "Frames the server sends to a room's sockets."),
        },
        "components": {
            "messages": messages,
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {
                "type": "httpApiKey", "in": "header", "name": "Sec-WebSocket-Protocol",
                "description": f"offer the subprotocols `{protocol.SUBPROTOCOL}` and "
                               f"`{protocol.BEARER_PREFIX}<session token>`, or send an `auth` "
                               "frame first; never put the token in the URL"}},
        },
    }


def with_server(spec: dict[str, Any], host: str, *, secure: bool) -> dict[str, Any]:
    """`spec` with this node as its server (the host the document was fetched from)."""
    server = {"host": host, "protocol": "wss" if secure else "ws",
              "security": [{"$ref": "#/components/securitySchemes/bearer"}]}
    channel = {**spec["channels"][CHANNEL], "servers": [{"$ref": "#/servers/this"}]}
    return {**spec, "servers": {"this": server}, "channels": {CHANNEL: channel}}


def _message(model: type[BaseModel]) -> dict[str, Any]:
    message: dict[str, Any] = {"name": frame_type(model), "title": model.__name__,
                               "payload": {"$ref": f"#/components/schemas/{model.__name__}"}}
    doc = inspect.getdoc(model)
    if doc and model.__doc__:
        message["summary"] = doc.splitlines()[0]
    return message


def _operation(action: str, models: list[type[BaseModel]], summary: str) -> dict[str, Any]:
    return {"action": action, "summary": summary, "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{frame_type(m)}"} for m in models]}

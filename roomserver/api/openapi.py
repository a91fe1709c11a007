"""The OpenAPI 3.1 document, built from the declared endpoints (decision D5).

Every request body, query and response model becomes a component schema; query parameters
take their schemas (types, enums, bounds, defaults) from the query model's fields; path
parameters from `PATH_PARAMS`, which must name every `{param}` of every path (building the
document fails otherwise). Every error status an endpoint can answer is documented with the
error envelope `{"error": {"code", "message", "details"}}`; `statuses(ep)` is that set, and
the response check (`roomserver/api/contract.py`) holds handlers to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from roomserver.api.http import Endpoint

_UUID = {"type": "string", "format": "uuid"}
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "room_id": {**_UUID, "description": "a room id (anything else: 404 room_not_found)"},
    "user_id": {**_UUID, "description": "a user id (anything else: 404 user_not_found)"},
    "document_id": {**_UUID, "description": "a document id (anything else: 404 document_not_found)"},
    "thread_id": {**_UUID, "description": "a tutor thread id (anything else: 404 thread_not_found)"},
    "job_id": {**_UUID, "description": "an ingestion job id (anything else: 404 job_not_found)"},
    "cid": {"type": "string", "pattern": "^b[a-z2-7]+$", "maxLength": 128,
            "description": "CIDv1, raw codec, sha2-256, base32 (`bafkrei…`)"},
    "mint": {"type": "string", "pattern": "^[1-9A-HJ-NP-Za-km-z]{32,44}$",
             "description": "a collection mint address (base58)"},
}
"""Schema of every path parameter, by name."""

_STATUS_TEXT = {400: "Bad request", 401: "Not signed in or sign-in refused", 403: "Forbidden",
                404: "Not found", 409: "Conflict", 413: "Too large", 415: "Unsupported type",
                429: "Rate limited (see `Retry-After`)", 503: "A component is unavailable"}


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable reason, e.g. `room_not_found`")
    message: str = Field(description="human-readable; may change")
    details: dict[str, Any] = Field(default_factory=dict, description="code-specific facts")


class ErrorEnvelope(BaseModel):
    """Every error response (docs/api.md)."""

    error: ErrorBody


def statuses(ep: Endpoint) -> frozenset[int]:
    """Every status `ep` may answer: its success, its declared errors and the implied ones."""
    implied = set(ep.errors)
    if ep.body is not None or ep.query is not None:
        implied.add(400)
    if ep.body is not None:
        implied.add(413)
    if ep.auth:
        implied |= {401, 429}
    if ep.operator:
        implied |= {401, 403, 429}
    return frozenset({ep.status, *ep.also, *implied})


def build(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorEnvelope}
    for ep in endpoints:
        models.update(m for m in (ep.body, ep.query, ep.response) if m is not None)
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(_openapi_path(ep.path), {})[ep.method.lower()] = _operation(ep, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "REST API of roomserver (docs/api.md). The room WebSocket "
                                "protocol is described by the AsyncAPI document at `/asyncapi.json`."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a session token from `POST /api/v1/auth/wallet/verify`"},
                "operator": {"type": "http", "scheme": "bearer",
                             "description": "the node's `OPERATOR_TOKEN` setting (operations)"}},
        },
    }


def _openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(ep: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag],
                          "operationId": f"{ep.handler.__name__}_{ep.method.lower()}"}
    params = [*_path_params(ep), *_query_params(ep, schemas)]
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {ep.content_type: {"schema": _ref(ep.body)}}}
    op["responses"] = _responses(ep)
    if ep.auth:
        op["security"] = [{"bearer": []}]
    if ep.operator:
        op["security"] = [{"operator": []}]
    return op


def _path_params(ep: Endpoint) -> list[dict[str, Any]]:
    params = []
    for name in re.findall(r"\{(\w+)", ep.path):
        if name not in PATH_PARAMS:
            raise KeyError(f"{ep.method} {ep.path}: declare path parameter {name!r} in PATH_PARAMS")
        schema = dict(PATH_PARAMS[name])
        description = schema.pop("description", "")
        params.append({"name": name, "in": "path", "required": True, "description": description,
                       "schema": schema})
    return params


def _query_params(ep: Endpoint, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if ep.query is None:
        return []
    model = schemas[ep.query.__name__]
    required = set(model.get("required", ()))
    params = []
    for name, prop in model.get("properties", {}).items():
        schema = _not_null({k: v for k, v in prop.items() if k not in ("title", "description")})
        params.append({"name": name, "in": "query", "required": name in required,
                       "description": prop.get("description", ""), "schema": schema})
    return params


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter is absent, never null: `anyOf [X, null]` becomes X."""
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if len(branches) != 1 or len(schema["anyOf"]) != 2:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**branches[0], **rest}


def _responses(ep: Endpoint) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success"}
    if ep.response is not None:
        ok["content"] = {ep.produces: {"schema": _ref(ep.response)}}
    elif ep.produces != "application/json":
        ok["content"] = {ep.produces: {"schema": {"type": "string", "format": "binary"}}}
    responses: dict[str, Any] = {str(ep.status): ok}
    for code in ep.also:
        responses[str(code)] = ({"description": "Not modified (`If-None-Match`)"} if code == 304
                                else {**ok, "description": "Success"})
    envelope = {"application/json": {"schema": _ref(ErrorEnvelope)}}
    for code in sorted(statuses(ep) - {ep.status, *ep.also}):
        responses[str(code)] = {"description": _STATUS_TEXT.get(code, "Error"), "content": envelope}
        if code == 429:
            responses[str(code)]["headers"] = {"Retry-After": {
                "description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}}
    responses["default"] = {"description": "Unexpected error (`internal_error`; logged)",
                            "content": envelope}
    return responses

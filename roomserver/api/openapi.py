"""The OpenAPI 3.1 document, built from the declared endpoints' pydantic models, and /docs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from roomserver.api.http import Endpoint, reply

_STATUS_TEXT = {400: "Bad request", 401: "Not signed in or sign-in refused", 403: "Forbidden",
                404: "Not found", 409: "Conflict", 413: "Too large", 415: "Unsupported type",
                429: "Rate limited", 503: "A component is unavailable"}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def build(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorEnvelope}
    for ep in endpoints:
        models.update(m for m in (ep.body, ep.response) if m is not None)
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(_openapi_path(ep.path), {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag],
                          "operationId": f"{ep.handler.__name__}_{ep.method.lower()}"}
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"\{(\w+)", ep.path)]
    if ep.query is not None:
        for name, info in ep.query.model_fields.items():
            params.append({"name": name, "in": "query", "required": info.is_required(),
                           "description": info.description or "", "schema": {}})
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {ep.content_type: {"schema": _ref(ep.body)}}}
    ok: dict[str, Any] = {"description": "Success"}
    if ep.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(ep.response)}}
    responses: dict[str, Any] = {str(ep.status): ok}
    codes = set(ep.errors) | ({400} if ep.body or ep.query else set()) | ({401, 429} if ep.auth else set())
    for code in sorted(codes):
        responses[str(code)] = {"description": _STATUS_TEXT.get(code, "Error"),
                                "content": {"application/json": {"schema": _ref(ErrorEnvelope)}}}
    op["responses"] = responses
    if ep.auth:
        op["security"] = [{"bearer": []}]
    return op


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roomserver API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2rem}h2{margin-top:2rem}.op{margin:.4rem 0}
.m{display:inline-block;width:4.5rem;font-weight:bold}</style></head>
<body><h1>roomserver API</h1><p>Machine-readable: <a href="/openapi.json">/openapi.json</a>
(OpenAPI 3.1). WebSocket protocol: docs/protocol.md.</p><div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const byTag = {};
  for (const [path, ops] of Object.entries(spec.paths)) for (const [m, op] of Object.entries(ops))
    (byTag[op.tags[0]] ||= []).push([m.toUpperCase(), path, op]);
  const el = document.getElementById('ops'); el.textContent = '';
  for (const [tag, ops] of Object.entries(byTag)) {
    const h = document.createElement('h2'); h.textContent = tag; el.append(h);
    for (const [m, path, op] of ops) {
      const d = document.createElement('div'); d.className = 'op';
      const s = document.createElement('span'); s.className = 'm'; s.textContent = m;
      const c = document.createElement('code'); c.textContent = path;
      d.append(s, c, ' ' + op.summary + (op.security ? ' (signed in)' : '')); el.append(d);
    }
  }
});
</script></body></html>"""


def endpoints(spec: dict[str, Any]) -> list[Endpoint]:
    async def openapi_json(request: Request) -> Response:
        return reply(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)

    return [
        Endpoint("GET", "/openapi.json", openapi_json, "This OpenAPI document", "meta", auth=False),
        Endpoint("GET", "/docs", docs, "Human-readable API index", "meta", auth=False,
                 content_type="text/html"),
    ]

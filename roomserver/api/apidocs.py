"""The API reference: `/openapi.json`, `/asyncapi.json` and `/docs` (Swagger UI).

Swagger UI's files come from the `swagger-ui-py` wheel (its `swagger_ui/static/`, read
without importing that package), our start-up script from `roomserver/static/docs.js`; no
CDN and no inline script, so `/docs` runs under a strict Content-Security-Policy and
offline. Only the files named in `ASSETS` are served under `/docs/assets/`.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from roomserver.api import asyncapi
from roomserver.api.http import Endpoint, reply

ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "docs.js": "text/javascript; charset=utf-8",
}
OURS = frozenset({"docs.js"})

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roomserver API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head><body>
<div id="swagger-ui"><p>The interactive reference needs JavaScript. Machine-readable:
<a href="/openapi.json">/openapi.json</a> (REST, OpenAPI 3.1) and
<a href="/asyncapi.json">/asyncapi.json</a> (WebSocket, AsyncAPI 3.0).</p></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs.js"></script>
</body></html>"""

_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"}


@cache
def swagger_dir() -> Path:
    """Where the swagger-ui-py wheel keeps Swagger UI's files."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _read(name: str) -> bytes:
    if name in OURS:
        return resources.files("roomserver").joinpath("static", name).read_bytes()
    return (swagger_dir() / name).read_bytes()


def endpoints(openapi_spec: dict[str, Any], asyncapi_spec: dict[str, Any]) -> list[Endpoint]:
    async def openapi_json(request: Request) -> Response:
        return reply(openapi_spec)

    async def asyncapi_json(request: Request) -> Response:
        secure = request.url.scheme in ("https", "wss")
        return reply(asyncapi.with_server(asyncapi_spec, request.url.netloc, secure=secure))

    async def docs(request: Request) -> Response:
        headers = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer",
                   "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
        return HTMLResponse(PAGE, headers=headers)

    return [
        Endpoint("GET", "/openapi.json", openapi_json, "This OpenAPI document", "meta", auth=False),
        Endpoint("GET", "/asyncapi.json", asyncapi_json,
                 "The AsyncAPI 3.0 document of the room WebSocket protocol", "meta", auth=False),
        Endpoint("GET", "/docs", docs, "Interactive API reference (Swagger UI)", "meta", auth=False,
                 produces="text/html"),
    ]


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, "no such file")
    return Response(_read(name), media_type=media_type, headers=_HEADERS)


def routes() -> list[Route]:
    return [Route("/docs/assets/{name}", asset, methods=["GET", "HEAD"])]

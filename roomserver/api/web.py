"""The browser client: `/` is the single page, `/static/<name>` its few assets.

The files live in `roomserver/static/` (no build step, no third-party code). Only the files
listed in `ASSETS` are served, each with a fixed content type, so nothing else in the
package directory can be read over HTTP and no platform mime table changes a type.
"""

from __future__ import annotations

from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
       "object-src 'none'")

_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _read(name: str) -> bytes:
    return resources.files("roomserver").joinpath("static", name).read_bytes()


async def index(request: Request) -> Response:
    headers = {**_HEADERS, "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=headers)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, "no such file")
    return Response(_read(name), media_type=media_type, headers=_HEADERS)


def routes() -> list[Route]:
    return [Route("/", index, methods=["GET", "HEAD"]),
            Route("/static/{name}", asset, methods=["GET", "HEAD"])]

"""The REST edge's shared pieces: endpoint declarations, typed bodies, errors, the current user.

Every endpoint is declared once as an `Endpoint`; the same list builds the routes and the
OpenAPI document, so the docs cannot drift from what is served. The route wrapper enforces
what a declaration says before the handler runs: `auth=True` (the default) means no valid
session, no handler (the `authenticate` given to `routes` answers 401, and its session is
`request.state.session`); `operator=True` means no operator token, no handler (the
`authorize_operator` given to `routes` answers 401/403); a JSON `body` model is parsed and validated (400 `invalid_json` /
`validation_error`), and the model is `request.state.body`, which `read_body` returns.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route

from roomserver import errors
from roomserver.observe import logs
from roomserver.values import as_uuid

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]
Authenticate = Callable[[Request], Awaitable[object]]
"""authenticate(request) -> the caller's session, or raises a typed 401 (or 429)."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    also: Sequence[int] = field(default_factory=tuple)  # other success statuses (2xx: same model; 304)
    auth: bool = True
    operator: bool = False  # behind OPERATOR_TOKEN instead of a session (declare auth=False)
    errors: Sequence[int] = field(default_factory=tuple)
    content_type: str = "application/json"  # of the request body
    produces: str = "application/json"  # of the success response


def routes(endpoints: Sequence[Endpoint], authenticate: Authenticate,
           authorize_operator: Authenticate | None = None) -> list[Route]:
    """One route per path; each method's handler behind `enforce`."""
    by_path: dict[str, dict[str, Handler]] = {}
    for ep in endpoints:
        by_path.setdefault(ep.path, {})[ep.method.upper()] = enforce(ep, authenticate,
                                                                     authorize_operator)
    return [Route(path, _dispatch(handlers), methods=list(handlers)) for path, handlers in by_path.items()]


def enforce(ep: Endpoint, authenticate: Authenticate,
            authorize_operator: Authenticate | None = None) -> Handler:
    """`ep.handler` run only once what `ep` declares holds: a session when `ep.auth`, the
    operator token when `ep.operator`, then a valid body when `ep.body` is JSON. (A multipart
    body is streamed by its handler, under the upload's own limits.)"""
    body = ep.body if ep.body is not None and ep.content_type == "application/json" else None
    if ep.operator and authorize_operator is None:
        raise ValueError(f"{ep.method} {ep.path} is an operator endpoint: give authorize_operator")
    if not ep.auth and not ep.operator and body is None:
        return ep.handler

    async def handler(request: Request) -> Response:
        room = request.path_params.get("room_id")
        if isinstance(room, str) and _is_uuid(room):  # for the log lines of this request
            logs.room_id.set(room)
        if ep.auth:
            request.state.session = await authenticate(request)
        if ep.operator and authorize_operator is not None:
            await authorize_operator(request)
        if body is not None:
            request.state.body = await _parse_body(request, body)
        return await ep.handler(request)

    handler.__name__ = handler.__qualname__ = ep.handler.__name__
    return handler


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _dispatch(handlers: dict[str, Handler]) -> Handler:
    if len(handlers) == 1:
        return next(iter(handlers.values()))

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    return dispatch


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def reply(content: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> JSONResponse:
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="json")
    return JSONResponse(content, status_code=status)


def error_response(exc: errors.RoomserverError) -> JSONResponse:
    headers = {}
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`: the one the route wrapper validated when the endpoint declares
    it, else parsed and validated now; every failure is a typed 4xx."""
    parsed = getattr(request.state, "body", None)
    if isinstance(parsed, model):
        return parsed
    return await _parse_body(request, model)


async def _parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if not raw:
        raw = b"{}"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest("request body is not valid JSON", code="invalid_json",
                                details={"position": exc.pos}) from None
    return validate(model, data)


def read_query(request: Request, model: type[M]) -> M:
    data: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        data[key] = values if len(values) > 1 or _is_list_field(model, key) else values[0]
    return validate(model, data)


def _is_list_field(model: type[BaseModel], key: str) -> bool:
    info = model.model_fields.get(key)
    return info is not None and "list" in str(info.annotation)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise errors.BadRequest("request failed validation", code="validation_error",
                                details={"errors": problems}) from None


def path_uuid(request: Request, name: str, code: str) -> uuid.UUID:
    """The path parameter `name` as a UUID; anything else is the same typed 404 as an unknown id."""
    return as_uuid(request.path_params[name], code, name.removesuffix("_id").replace("_", " "))


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def client_ip(conn: HTTPConnection) -> str:
    """The client's address: the peer's, or a trusted proxy's X-Forwarded-For (FORWARDED_ALLOW_IPS)."""
    return conn.client.host if conn.client else "unknown"


def client_key(conn: HTTPConnection) -> str:
    """The per-IP rate-limit key of the caller: `ip_key(client_ip(conn))`."""
    return ip_key(client_ip(conn))


def ip_key(address: str) -> str:
    """An IPv4 address as itself; IPv6 by its /64 (one subscriber's allocation, so rotating
    through it buys no fresh budget); an IPv4-mapped IPv6 address as the IPv4 one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)

"""Holds handlers to their declarations: the opt-in response check (`VALIDATE_RESPONSES`).

`checked(ep)` wraps an endpoint's handler. Every JSON success response must validate against
`ep.response` and carry no field the model does not declare; every status, success or typed
error, must be one the OpenAPI document lists for the endpoint (`openapi.statuses`). A breach
is logged and answered 500 `response_contract`, so a test that meets it fails loudly. Tests
turn it on; production leaves it off (it costs a parse and a validation per response).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from roomserver import errors
from roomserver.api.http import Endpoint, Handler
from roomserver.api.openapi import statuses

log = logging.getLogger(__name__)


class ContractBreach(errors.RoomserverError):
    default_code = "response_contract"


def checked(ep: Endpoint) -> Handler:
    allowed = statuses(ep)

    async def handler(request: Request) -> Response:
        try:
            response = await ep.handler(request)
        except errors.RoomserverError as exc:
            if exc.status not in allowed:
                _breach(ep, f"answered {exc.status} {exc.code}, not among {sorted(allowed)}")
            raise
        if response.status_code not in allowed:
            _breach(ep, f"answered {response.status_code}, not among {sorted(allowed)}")
        body = getattr(response, "body", None)  # streamed and file responses have none
        success = 200 <= response.status_code < 300
        if ep.response is not None and success and body is not None:
            problem = body_problem(ep.response, bytes(body))
            if problem:
                _breach(ep, problem)
        return response

    handler.__name__ = ep.handler.__name__
    return handler


def body_problem(model: type[BaseModel], body: bytes) -> str | None:
    """Why `body` is not an instance of `model` as declared, or None."""
    try:
        data = orjson.loads(body)
        parsed = model.model_validate(data)
    except (orjson.JSONDecodeError, ValidationError) as exc:
        return f"body does not match {model.__name__}: {exc}"
    extra = undeclared(data, parsed.model_dump(mode="json"))
    return f"body has fields {model.__name__} does not declare: {extra}" if extra else None


def undeclared(data: Any, declared: Any, where: str = "") -> list[str]:
    """Paths of keys in `data` that the validated-and-dumped `declared` lacks."""
    if isinstance(data, dict) and isinstance(declared, dict):
        out = [f"{where}.{k}".lstrip(".") for k in data if k not in declared]
        for key in data.keys() & declared.keys():
            out += undeclared(data[key], declared[key], f"{where}.{key}")
        return out
    if isinstance(data, list) and isinstance(declared, list) and len(data) == len(declared):
        return [p for i, (a, b) in enumerate(zip(data, declared, strict=True))
                for p in undeclared(a, b, f"{where}[{i}]")]
    return []


def _breach(ep: Endpoint, problem: str) -> None:
    log.error("response contract broken by %s %s: %s", ep.method, ep.path, problem)
    raise ContractBreach(f"{ep.method} {ep.path} broke its declared contract: {problem}"[:2000])

"""Request body size caps, enforced while the body streams in (never buffered whole first)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roomserver import errors
from roomserver.api.http import error_response


class BodyLimit:
    """413 for a body over `default` bytes; paths starting with a key of `overrides` get their own cap."""

    def __init__(self, app: ASGIApp, default: int, overrides: dict[str, int] | None = None):
        self.app = app
        self.default = default
        self.overrides = overrides or {}

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.overrides.items():
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        too_large = errors.PayloadTooLarge(f"request body is larger than {limit} bytes",
                                           details={"limit": limit})
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(too_large)(scope, receive, send)
            return
        seen = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except errors.PayloadTooLarge as exc:
            if not response_started:
                await error_response(exc)(scope, receive, send)

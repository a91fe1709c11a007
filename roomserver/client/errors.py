"""What the client raises: one small tree, the server's codes carried as they came.

    ClientError                anything this package raises
    ├── TargetError            the URL is not an http(s) or ws(s) address of a server (also ValueError)
    ├── Unreachable            no answer: transport errors, after the retries
    ├── ApiError               the server refused: `code`, `message`, `details` of its
    │                          `{"error": {code, message, details}}` body (`status` = the HTTP status),
    │                          or of a socket `error` frame (`status` None, `ref` = the frame's id)
    ├── UnexpectedFrame        the server sent what the protocol does not allow here
    └── Closed                 the socket ended for good: `code` (a `CloseCode` when known), `reason`

`Closed.reconnectable` is the protocol's rule (docs/protocol.md, close codes): 4000-4099 and
1001/1006/1011/1012/1013 reconnect and resume; the socket only raises `Closed` for those when it
was told not to reconnect, or gave up.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from roomserver.errors import CloseCode

RECONNECTABLE = frozenset({1001, 1006, 1011, 1012, 1013})
RETRY_STATUSES = frozenset({429, 503})


class ClientError(Exception):
    """Base of everything `roomserver.client` raises."""


class TargetError(ClientError, ValueError):
    """The URL is not an http(s) or ws(s) address of a server."""


class Unreachable(ClientError):
    """The server could not be reached; `cause` is the last transport error."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class ApiError(ClientError):
    """The server refused a request (HTTP error body) or a frame (`error` frame)."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 details: dict[str, Any] | None = None, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if status is None else f"HTTP {status} {code}: {message}")
        self.code, self.message, self.status = code, message, status
        self.details = details or {}
        self.ref = ref

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying, when the server said (`rate_limited`)."""
        value = self.details.get("retry_after")
        return float(value) if isinstance(value, int | float) else None

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """The error a non-success response carries (`http_<status>` when its body is not ours)."""
        return cls.from_body(response.status_code, response.content)

    @classmethod
    def from_body(cls, status: int, body: bytes) -> ApiError:
        try:
            error = orjson.loads(body)["error"]
            code, message = str(error["code"]), str(error.get("message", ""))
            details = error.get("details") if isinstance(error.get("details"), dict) else {}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return cls(f"http_{status}", body[:200].decode("utf-8", "replace"), status=status)
        return cls(code, message, status=status, details=details)


class UnexpectedFrame(ClientError):
    """The server sent a frame the protocol does not allow at this point (or not a frame)."""


class Closed(ClientError):
    """The room socket ended and will not reconnect by itself."""

    def __init__(self, code: int, reason: str = "") -> None:
        try:
            self.code: int = CloseCode(code)
        except ValueError:
            self.code = code
        self.reason = reason
        name = self.code.name if isinstance(self.code, CloseCode) else str(code)
        super().__init__(f"socket closed {int(code)} {name}" + (f": {reason}" if reason else ""))

    @property
    def reconnectable(self) -> bool:
        return reconnectable(int(self.code))


def reconnectable(code: int) -> bool:
    """Whether a socket closed with `code` should reconnect and resume."""
    return code in RECONNECTABLE or 4000 <= code < 4100

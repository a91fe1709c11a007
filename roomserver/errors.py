"""The one error tree, with codes, HTTP statuses and WebSocket close codes.

    RoomserverError            code, message, details; status 500
    ├── BadRequest             400 bad_request / validation_error / malformed
    ├── Unauthorized           401 (SIWS reasons: signature_invalid, nonce_used, ...)
    ├── Forbidden              403 (banned, not_invited, room_full, insufficient_holdings, ...)
    ├── NotFound               404
    ├── Conflict               409
    ├── PayloadTooLarge        413
    ├── UnsupportedMediaType   415
    ├── RateLimited            429, details.retry_after seconds
    ├── QuotaExceeded          429 (upload_quota_exceeded, ...): a standing limit, no retry_after
    └── Unavailable            503 (gating_unavailable, tutor_unavailable, ...)

Every error reaches an HTTP client as `{"error": {"code", "message", "details"}}` and a
WebSocket client as an `error` frame with the same code.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class RoomserverError(Exception):
    status: int = 500
    default_code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(RoomserverError):
    status = 400
    default_code = "bad_request"


class Unauthorized(RoomserverError):
    status = 401
    default_code = "unauthorized"


class Forbidden(RoomserverError):
    status = 403
    default_code = "forbidden"


class NotFound(RoomserverError):
    status = 404
    default_code = "not_found"


class Conflict(RoomserverError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(RoomserverError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(RoomserverError):
    status = 415
    default_code = "unsupported_media_type"


class RateLimited(RoomserverError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str = "too many requests", *, retry_after: float, code: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message, code=code, details={**(details or {}), "retry_after": round(retry_after, 3)})
        self.retry_after = retry_after


class QuotaExceeded(RoomserverError):
    """A standing limit (not a rate): waiting does not help, freeing something does."""

    status = 429
    default_code = "quota_exceeded"


class Unavailable(RoomserverError):
    status = 503
    default_code = "unavailable"


class CloseCode(IntEnum):
    """WebSocket close codes.

    1000-1015 are RFC 6455's. 4000-4099: reconnect (to any node) and `resume`.
    4100-4199: do not reconnect automatically.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    # reconnect and resume
    SHUTDOWN = 4000
    SLOW_CONSUMER = 4001
    INSUFFICIENT_STATE = 4002
    NO_PONG = 4003
    FLOOD = 4004
    TOO_MANY_SOCKETS = 4005
    # do not reconnect
    UNAUTHORIZED = 4100
    FORBIDDEN = 4101
    BANNED = 4102
    KICKED = 4103
    ROOM_CLOSED = 4104
    SESSION_REVOKED = 4105
    NO_LONGER_QUALIFIES = 4106
    ROOM_NOT_FOUND = 4107
    BAD_ORIGIN = 4108

    @property
    def should_reconnect(self) -> bool:
        return self < 4100

"""Log lines: JSON (one object per line) or text, with the request's and socket's ids.

The ids live in context variables set at the edges (`roomserver/api/observe.py` for every
HTTP request and socket handshake, `roomserver/api/ws.py` once a socket is joined, the REST
guard once a caller is known) and are read by the formatter, so every line logged while
handling that request or socket carries them, whoever logs it (uvicorn's access lines too).

`log_config(level, fmt)` is the one `logging.config.dictConfig` the command line applies and
hands to uvicorn (`log_config=`), so uvicorn's own error and access lines use the same format
in every worker. A JSON line: `time` (UTC, ISO 8601), `level`, `logger`, `message`, then
`request_id`, `conn_id`, `user_id`, `room_id` where known, and `exception` with a traceback.
The code never logs tokens, signatures or keys; as a net under libraries that log what they
were sent (websockets logs handshake headers at debug level, among them the
`bearer.<token>` subprotocol), `HideCredentials` on the one handler hides bearer credentials
and session tokens in every line (tests/test_logs.py greps a real run's logs for every
token and signature it used).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
conn_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("conn_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)
room_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("room_id", default=None)
CONTEXT = (("request_id", request_id), ("conn_id", conn_id), ("user_id", user_id), ("room_id", room_id))

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_CREDENTIALS = re.compile(r"(?i)(\bbearer[. ]\s*)[^\s,;'\"]+|\brs1_[A-Za-z0-9_-]+")


def hide_credentials(text: str) -> str:
    """`text` with `Bearer X`, `bearer.X` (the socket subprotocol) and session tokens hidden."""
    return _CREDENTIALS.sub(lambda m: f"{m.group(1)}***" if m.group(1) else "rs1_***", text)


class HideCredentials(logging.Filter):
    """A handler filter: bearer credentials and session tokens in a message become `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = hide_credentials(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


def context() -> dict[str, str]:
    """The ids known in the current context."""
    return {name: value for name, var in CONTEXT if (value := var.get()) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the context's ids."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **context(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the known ids appended in brackets."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = context()
        return f"{text} [{' '.join(f'{k}={v}' for k, v in ids.items())}]" if ids else text


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """`auto` is json unless `stream` (default stderr) is a terminal."""
    if fmt != "auto":
        return fmt
    stream = stream or sys.stderr
    return "text" if stream.isatty() else "json"


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """The dictConfig for the server and uvicorn: every logger through one stderr handler."""
    formatter = JsonFormatter if resolve_format(fmt) == "json" else TextFormatter
    quiet = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"roomserver": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "filters": {"credentials": {"()": f"{__name__}.HideCredentials"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "roomserver",
                                "filters": ["credentials"], "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {"uvicorn": quiet, "uvicorn.error": quiet,
                    "uvicorn.access": quiet},
    }

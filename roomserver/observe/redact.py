"""`redact_url`: a URL as it may be printed, logged or shown to an operator.

Provider keys travel in URLs (an RPC provider's `?api-key=`, a path token, `user:password@`),
so every URL the server prints, logs or reports in health goes through `redact_url` first: it
keeps the scheme, host and port (enough to tell which endpoint is meant) and replaces the
userinfo, path, query and fragment. It never raises; text that is not a URL is hidden whole.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

HIDDEN = "***"


def redact_url(url: str) -> str:
    """`scheme://***@host:port/***` with each part shown only if present; `***` for non-URLs."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
    except ValueError:
        return HIDDEN
    if not parts.scheme or "://" not in url:
        return HIDDEN
    if ":" in host:
        host = f"[{host}]"
    userinfo = f"{HIDDEN}@" if "@" in parts.netloc else ""
    rest = "/" + HIDDEN if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{userinfo}{host}{'' if port is None else f':{port}'}{rest}"


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """`text` (an exception's message, a log line) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


class RedactUrls(logging.Filter):
    """A log filter: every URL in the record's message is redacted (the message is rendered)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact_text(message), None
        return True


URL_LOGGERS = ("httpx", "httpx2", "anthropic", "solana", "uvicorn.error")
"""Loggers of libraries that log request URLs (httpx's INFO line per request names the RPC URL,
credentials and all)."""


def redact_library_logs() -> None:
    """Install `RedactUrls` on `URL_LOGGERS` once per process (idempotent)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactUrls) for f in logger.filters):
            logger.addFilter(RedactUrls())

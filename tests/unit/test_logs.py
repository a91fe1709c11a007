"""The log formatters: one JSON object per record with the context's ids; credentials hidden
by the handler's filter; `auto` picks json off a terminal; the config dictConfig accepts."""

from __future__ import annotations

import io
import logging
import logging.config

import orjson
from hypothesis import given
from hypothesis import strategies as st

from roomserver.observe import logs


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("roomserver.test", logging.WARNING, __file__, 1, message, args, None)


def test_json_line_carries_the_context_ids() -> None:
    token = logs.conn_id.set("c1"), logs.room_id.set("r1")
    try:
        line = orjson.loads(logs.JsonFormatter().format(record("hello %s", "there")))
    finally:
        logs.conn_id.reset(token[0])
        logs.room_id.reset(token[1])
    assert line["message"] == "hello there" and line["level"] == "warning"
    assert line["logger"] == "roomserver.test" and line["time"].endswith("+00:00")
    assert line["conn_id"] == "c1" and line["room_id"] == "r1"
    assert "request_id" not in line and "user_id" not in line


def test_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = logs.JsonFormatter().format(rec)
    assert "\n" not in text and "ValueError: boom" in orjson.loads(text)["exception"]


def test_text_lines_append_the_ids() -> None:
    token = logs.request_id.set("abc")
    try:
        assert logs.TextFormatter().format(record("x")).endswith("x [request_id=abc]")
    finally:
        logs.request_id.reset(token)


CREDENTIAL = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "P", "S"),
                                            exclude_characters=",;'\""), min_size=1)
SESSION = st.text(alphabet="abcXYZ0189_-", min_size=1)


@given(CREDENTIAL, SESSION)
def test_credentials_are_hidden(secret: str, session: str) -> None:
    assert (logs.hide_credentials(f"sec-websocket-protocol: roomserver.v1, bearer.{secret}, x")
            == "sec-websocket-protocol: roomserver.v1, bearer.***, x")
    assert logs.hide_credentials(f"Authorization: Bearer {secret}") == "Authorization: Bearer ***"
    assert logs.hide_credentials(f"token=rs1_{session} then") == "token=rs1_*** then"


def test_auto_is_json_off_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve_format("auto", io.StringIO()) == "json"
    assert logs.resolve_format("auto", Tty()) == "text"
    assert logs.resolve_format("text", io.StringIO()) == "text"


def test_the_config_routes_uvicorn_through_one_filtered_handler(capsys: object) -> None:
    config = logs.log_config("info", "json")
    logging.config.dictConfig(config)
    try:
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert any(isinstance(f, logs.HideCredentials) for f in handler.filters)
        assert logging.getLogger("uvicorn.access").handlers == []
        assert logging.getLogger("uvicorn.access").propagate
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        logging.getLogger().handlers.clear()

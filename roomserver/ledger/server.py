"""JSON-RPC 2.0 over HTTP for the local ledger (stdlib `http.server`, one thread per
connection, keep-alive with Nagle off, calls into the ledger serialised by a lock).

POST / with a request object or a batch array. Bodies over `max_body` bytes get HTTP 413;
anything that is not a valid JSON-RPC request gets the standard error object.

Browsers are kept out (a web page must not drive a local ledger, e.g. by DNS rebinding or a
form post): every request needs a `Host` naming loopback (`127.0.0.1`, `localhost`, `[::1]`,
any port) or the literal address the server is bound to (403 otherwise), and a POST needs
`Content-Type: application/json` (415 otherwise), which a cross-site page cannot send without
a CORS preflight this server never grants. `--dev` (raw account writes) is refused unless the
server binds to loopback.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from roomserver.ledger.methods import Methods, RpcError
from roomserver.ledger.state import Ledger

log = logging.getLogger("roomserver.ledger")
MAX_BODY = 1 << 20
MAX_BATCH = 100
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str | None) -> str | None:
    """The host part of a `Host` header (`h`, `h:port`, `[v6]`, `[v6]:port`); None if malformed."""
    if not header:
        return None
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return header[1:end]
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    return name


def allowed_host(header: str | None, bound: str) -> bool:
    """A loopback `Host`, or the literal address the server is bound to (not a wildcard)."""
    name = host_name(header)
    if name is None:
        return False
    return is_loopback(name) or (bound not in WILDCARDS and name == bound)


def is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


def _error(code: int, message: str, req_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": req_id}


def handle_one(methods: Methods, lock: threading.Lock, request: Any) -> dict[str, Any]:
    """Answer one decoded JSON-RPC request object."""
    if not isinstance(request, dict):
        return _error(-32600, "Invalid request")
    req_id = request.get("id")
    if not isinstance(req_id, (str, int, type(None))) or isinstance(req_id, bool):
        return _error(-32600, "Invalid request")
    method, params = request.get("method"), request.get("params", [])
    if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
        return _error(-32600, "Invalid request", req_id)
    if params is None:
        params = []
    if not isinstance(params, list):
        return _error(-32602, "Invalid params: expected an array", req_id)
    try:
        with lock:
            result = methods.call(method, params)
    except RpcError as exc:
        return {"jsonrpc": "2.0", "error": exc.to_json(), "id": req_id}
    except Exception:  # a bug must not kill the connection; report it as the standard internal error
        log.exception("ledger method %s failed", method)
        return _error(-32603, "Internal error", req_id)
    return {"jsonrpc": "2.0", "result": result, "id": req_id}


def handle_body(methods: Methods, lock: threading.Lock, body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error(-32700, "Parse error")
    if isinstance(payload, list):
        if not payload or len(payload) > MAX_BATCH:
            return _error(-32600, "Invalid request")
        return [handle_one(methods, lock, item) for item in payload]
    return handle_one(methods, lock, payload)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LedgerServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refused(self) -> bool:
        """Answer 403 (and close) unless the Host header is allowed; True when refused."""
        if allowed_host(self.headers.get("Host"), self.server.bound_host):
            return False
        self.close_connection = True
        self._send(403, _error(-32600, "Invalid request: Host must be a loopback address"))
        return True

    def do_GET(self) -> None:
        if self._refused():
            return
        if self.path == "/health":
            self._send(200, "ok")
        else:
            self._send(405, _error(-32600, "Invalid request: use POST"))

    def do_POST(self) -> None:
        if self._refused():
            return
        if not is_json(self.headers.get("Content-Type")):
            self.close_connection = True
            self._send(415, _error(-32600, "Invalid request: Content-Type must be application/json"))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._send(411, _error(-32600, "Invalid request: Content-Length required"))
            return
        if length < 0 or length > self.server.max_body:
            self.close_connection = True
            self._send(413, _error(-32600, "Invalid request: body too large"))
            return
        body = self.rfile.read(length)
        self._send(200, handle_body(self.server.methods, self.server.lock, body))


class LedgerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], methods: Methods, max_body: int = MAX_BODY):
        self.methods, self.max_body, self.lock = methods, max_body, threading.Lock()
        self.bound_host = address[0]
        super().__init__(address, _Handler)


def serve(host: str, port: int, data_dir: Path | None, *, dev: bool = False) -> None:
    """Run until interrupted; the log is flushed and closed on the way out. Raises ValueError
    for `dev` on a host that is not loopback."""
    if dev and not is_loopback(host):
        raise ValueError(f"--dev (raw account writes) is refused off loopback; bind 127.0.0.1, not {host}")
    ledger = Ledger(data_dir)
    server = LedgerServer((host, port), Methods(ledger, dev=dev))
    print(f"ledger listening on http://{host}:{server.server_address[1]} (slot {ledger.slot})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        with server.lock:
            ledger.close()

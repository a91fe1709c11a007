"""Free loopback ports for the child servers this package (and its tests) start.

A port is free when this call could bind it; another process may take it before the caller
does, so a caller that loses the race starts again with a new port.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack

HIGHEST = 65535
ATTEMPTS = 200


def free_port(host: str = "127.0.0.1", *, offset: int = 0) -> int:
    """A TCP port free on `host`; with `offset`, `port + offset` is free too (and at most 65535).

    `offset=10000` suits servers that open a second listener there: a Redis Cluster node's bus,
    SeaweedFS's gRPC ports. RuntimeError when no such port turns up.
    """
    if offset < 0 or offset >= HIGHEST:
        raise ValueError(f"offset must be in [0, {HIGHEST}), not {offset}")
    for _ in range(ATTEMPTS):
        with ExitStack() as held:
            port = _bind(held, host, 0)
            if not offset:
                return port
            if port + offset <= HIGHEST and _try_bind(held, host, port + offset):
                return port
    raise RuntimeError(f"no free port on {host} with port+{offset} free after {ATTEMPTS} tries")


def _bind(held: ExitStack, host: str, port: int) -> int:
    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind((host, port))
    return int(sock.getsockname()[1])


def _try_bind(held: ExitStack, host: str, port: int) -> bool:
    try:
        _bind(held, host, port)
    except OSError:
        return False
    return True

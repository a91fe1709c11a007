"""free_port: a bindable loopback port, optionally with port + offset bindable too."""

from __future__ import annotations

import socket

import pytest

from roomserver.store.ports import HIGHEST, free_port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    assert 0 < port <= HIGHEST and _bindable(port)


@pytest.mark.parametrize("offset", [1, 10000])
def test_with_an_offset_both_ports_are_free(offset: int) -> None:
    for _ in range(20):  # the OS hands out ports above 55535 often enough to meet that case
        port = free_port(offset=offset)
        assert port + offset <= HIGHEST
        assert _bindable(port) and _bindable(port + offset)


def test_an_offset_beyond_the_port_range_is_refused() -> None:
    with pytest.raises(ValueError):
        free_port(offset=HIGHEST)
    with pytest.raises(ValueError):
        free_port(offset=-1)

"""Shared fixtures: real TCP connections on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import netkeepalive._libc
import netkeepalive._sys


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket listening on 127.0.0.1 (an ephemeral port)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv


@pytest.fixture
def tcp_pair(listener: socket.socket) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server-side) ends of one established loopback connection."""
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


@pytest.fixture
def client(tcp_pair: tuple[socket.socket, socket.socket]) -> socket.socket:
    """The client end of an established loopback connection."""
    return tcp_pair[0]


@pytest.fixture
def fresh_backend() -> Iterator[None]:
    """Forget the loaded C library and backend before and after a test."""
    netkeepalive._sys.reset()
    netkeepalive._libc.reset()
    yield
    netkeepalive._sys.reset()
    netkeepalive._libc.reset()

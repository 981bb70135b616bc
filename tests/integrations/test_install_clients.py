"""install() reaches HTTP clients that know nothing about netkeepalive.

Each client sends a request to a real HTTP server on 127.0.0.1; the server
records the address the request came from, which is the local address of
the client's socket.  That socket is found among this process's open
descriptors (``/proc/self/fd``) and its options are read with the standard
library's ``getsockopt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any, List, Tuple

import pytest

import netkeepalive as nk
from netkeepalive import _install

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

TCP = socket.IPPROTO_TCP
POLICY = {"idle": 11_000, "interval": 3_000, "probes": 4, "user_timeout": 23_456}
#: (SO_KEEPALIVE, TCP_KEEPIDLE s, TCP_KEEPINTVL s, TCP_KEEPCNT, TCP_USER_TIMEOUT ms)
EXPECTED = (1, 11, 3, 4, 23_456)

Kernel = Tuple[int, int, int, int, int]


def kernel(sock: socket.socket) -> Kernel:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
    )


def open_tcp_sockets() -> list[Tuple[Any, Any, Kernel]]:
    """(local address, peer address, options) of this process's connected IPv4 TCP sockets.

    Each socket descriptor in /proc/self/fd is duplicated (the duplicate
    refers to the same socket), read, and closed.
    """
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # closed meanwhile, or the listing's own descriptor
        with dup:
            if dup.type == socket.SOCK_STREAM and dup.family == socket.AF_INET:
                with contextlib.suppress(OSError):  # a listener has no peer
                    out.append((dup.getsockname(), dup.getpeername(), kernel(dup)))
    return out


def kernel_of_local_address(address: Tuple[str, int]) -> Kernel:
    """The options of this process's one TCP socket bound locally to *address*."""
    found = [options for local, _peer, options in open_tcp_sockets() if local == address]
    assert len(found) == 1, (address, found)
    return found[0]


@pytest.fixture(autouse=True)
def _policy() -> Iterator[None]:
    """The policy is installed after the test server started listening."""
    nk.uninstall()
    _install._warned.clear()
    yield
    nk.uninstall()


def only_client(server: Any) -> Tuple[str, int]:
    addresses = set(server.client_addresses())
    assert len(addresses) == 1, addresses
    address: Tuple[str, int] = addresses.pop()
    return address


def test_http_client(http_server: Any) -> None:
    nk.install(**POLICY)
    host, port = http_server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok\n"
        assert conn.sock is not None
        assert conn.sock.getsockname() == only_client(http_server)
        assert kernel(conn.sock) == EXPECTED
    finally:
        conn.close()


def test_the_server_side_is_untouched_here(http_server: Any) -> None:
    """The test server listened before install(): its accepted socket keeps the defaults."""
    nk.install(**POLICY)
    host, port = http_server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        local = conn.sock.getsockname()  # type: ignore[union-attr]
        server_end = [s for s in open_tcp_sockets() if s[0] == (host, port) and s[1] == local]
        assert len(server_end) == 1
        assert server_end[0][2][0] == 0  # SO_KEEPALIVE off
    finally:
        conn.close()


def test_urllib3(http_server: Any) -> None:
    urllib3 = pytest.importorskip("urllib3")
    nk.install(**POLICY)
    with urllib3.PoolManager() as manager:
        response = manager.request("GET", http_server.url, timeout=10)
        assert response.status == 200
        assert kernel_of_local_address(only_client(http_server)) == EXPECTED


def test_requests(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    nk.install(**POLICY)
    with requests.Session() as session:
        assert session.get(http_server.url, timeout=10).text == "ok\n"
        assert kernel_of_local_address(only_client(http_server)) == EXPECTED


def test_httpx_sync(http_server: Any) -> None:
    httpx = pytest.importorskip("httpx")
    nk.install(**POLICY)
    with httpx.Client() as client:
        assert client.get(http_server.url, timeout=10).text == "ok\n"
        assert kernel_of_local_address(only_client(http_server)) == EXPECTED


def test_httpx_async(http_server: Any) -> None:
    httpx = pytest.importorskip("httpx")

    async def main() -> Kernel:
        async with httpx.AsyncClient() as client:
            response = await client.get(http_server.url, timeout=10)
            assert response.text == "ok\n"
            return kernel_of_local_address(only_client(http_server))

    nk.install(**POLICY)
    assert asyncio.run(main()) == EXPECTED


def test_aiohttp(http_server: Any) -> None:
    aiohttp = pytest.importorskip("aiohttp")

    async def main() -> Kernel:
        async with aiohttp.ClientSession() as session:
            async with session.get(http_server.url) as response:
                assert await response.text() == "ok\n"
            # The connection waits in the session's pool for the next request.
            return kernel_of_local_address(only_client(http_server))

    nk.install(**POLICY)
    assert asyncio.run(main()) == EXPECTED


class _RespServer(threading.Thread):
    """Just enough of a Redis server on 127.0.0.1: ``+PONG`` to PING, ``+OK`` to the rest.

    Records the address each connection came from.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.clients: List[Tuple[str, int]] = []

    def run(self) -> None:
        with contextlib.suppress(OSError):
            conn, address = self.listener.accept()
            self.clients.append(address)
            with conn:
                conn.settimeout(10)
                buffer = b""
                while True:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffer += data
                    commands, buffer = _parse_commands(buffer)
                    conn.sendall(
                        b"".join(b"+PONG\r\n" if c == b"PING" else b"+OK\r\n" for c in commands)
                    )


def _parse_commands(buffer: bytes) -> Tuple[List[bytes], bytes]:
    """The names of the complete RESP commands (``*N $len arg ...``) at the start of *buffer*."""
    names = []
    while buffer.startswith(b"*"):
        lines = buffer.split(b"\r\n")
        count = int(lines[0][1:])
        if len(lines) < 1 + 2 * count + 1:
            break
        names.append(lines[2].upper())
        buffer = b"\r\n".join(lines[1 + 2 * count :])
    return names, buffer


def test_redis() -> None:
    redis = pytest.importorskip("redis")
    server = _RespServer()
    server.start()
    try:
        nk.install(**POLICY)
        host, port = server.listener.getsockname()
        client = redis.Redis(host=host, port=port, socket_timeout=10, protocol=2)
        try:
            assert client.ping() is True
            assert len(server.clients) == 1
            assert kernel_of_local_address(server.clients[0]) == EXPECTED
        finally:
            client.close()
    finally:
        server.join(10)
        server.listener.close()


def test_after_uninstall_clients_are_untouched(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    nk.install(**POLICY)
    nk.uninstall()
    with requests.Session() as session:
        assert session.get(http_server.url, timeout=10).status_code == 200
        assert kernel_of_local_address(only_client(http_server))[0] == 0

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
from collections.abc import Iterator
from typing import Any, Tuple

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


def test_after_uninstall_clients_are_untouched(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    nk.install(**POLICY)
    nk.uninstall()
    with requests.Session() as session:
        assert session.get(http_server.url, timeout=10).status_code == 200
        assert kernel_of_local_address(only_client(http_server))[0] == 0

"""netkeepalive.aiohttp.socket_factory with a real ClientSession and aiohttp.web server.

The server reads the client's socket when the request arrives (the client
end is a socket in this process, see kernel_view); the client side reads
the same socket through the response's connection.  Both with
``sock.getsockopt``.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import sys
from collections.abc import Awaitable
from types import ModuleType
from typing import Any, Callable

import pytest
from helpers import kernel_view
from helpers.kernel_view import Kernel

import netkeepalive

aiohttp = pytest.importorskip("aiohttp", minversion="3.12")
from aiohttp import web  # noqa: E402

import netkeepalive.aiohttp  # noqa: E402

pytestmark = kernel_view.linux_only

WANTED = Kernel(1, 10, 5, 3, 30_000)

Session = Callable[[], "aiohttp.ClientSession"]


async def _serve_and_fetch(
    make_session: Session, fetch: Callable[[Any, str], Awaitable[Any]]
) -> tuple[list[tuple[tuple[str, int], Kernel]], Any]:
    """Start an aiohttp.web server on 127.0.0.1, run *fetch(session, url)*, stop.

    Returns what the server saw (the client's address and the client's
    socket as read at request time) and *fetch*'s result.
    """
    seen: list[tuple[tuple[str, int], Kernel]] = []

    async def hello(request: web.Request) -> web.Response:
        server_side = request.transport.get_extra_info("socket")  # type: ignore[union-attr]
        seen.append((server_side.getpeername()[:2], kernel_view.read_peer(server_side)))
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with make_session() as session:
            result = await fetch(session, f"http://127.0.0.1:{port}/")
    finally:
        await runner.cleanup()
    return seen, result


def _pooled_socket(session: Any) -> Any:
    """The socket of the one idle connection in a session's connector.

    ``connector._conns`` maps a connection key (host, port, TLS, proxy) to
    a deque of ``(protocol, last-used time)`` of idle connections; a
    response's connection goes back there once its body has been read
    (for a body this short, as soon as the headers are).  The protocol's
    transport hands out its socket as ``get_extra_info("socket")``.
    """
    (idle,) = session.connector._conns.values()
    ((protocol, _used),) = idle
    return protocol.transport.get_extra_info("socket")


async def _get_twice(session: Any, url: str) -> tuple[tuple[str, int], Kernel]:
    for _ in range(2):
        async with session.get(url) as response:
            assert response.status == 200
            assert await response.text() == "ok\n"
    sock = _pooled_socket(session)
    return sock.getsockname()[:2], kernel_view.read(sock)


def test_session_connections_get_keepalive(example: Callable[[str], ModuleType]) -> None:
    make_session = example("aiohttp_session").make_session
    seen, (local, kernel) = asyncio.run(_serve_and_fetch(make_session, _get_twice))
    # Both requests over one connection: the client's socket, read by both sides.
    assert seen == [(local, WANTED)] * 2
    assert kernel == WANTED


def test_session_from_a_detection_budget() -> None:
    budget = netkeepalive.detect_within(45_000)
    factory = netkeepalive.aiohttp.socket_factory(**budget)

    def make_session() -> Any:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=factory))

    seen, (local, kernel) = asyncio.run(_serve_and_fetch(make_session, _get_twice))
    expected = kernel_view.expected(budget)
    assert seen == [(local, expected)] * 2
    assert kernel == expected


def test_plain_session_leaves_keepalive_off() -> None:
    seen, (local, kernel) = asyncio.run(_serve_and_fetch(aiohttp.ClientSession, _get_twice))
    assert seen[0][0] == local
    assert kernel.keepalive == 0


def test_connection_to_a_proxy_gets_keepalive(http_server: Any) -> None:
    target = "http://127.0.0.1:1/through-proxy"  # never contacted: the proxy answers

    async def fetch() -> tuple[tuple[str, int], tuple[str, int], Kernel]:
        factory = netkeepalive.aiohttp.socket_factory(probes=5, idle=3_000)
        connector = aiohttp.TCPConnector(socket_factory=factory)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(target, proxy=http_server.url) as response:
                assert await response.text() == "ok\n"
            sock = _pooled_socket(session)
            return sock.getsockname()[:2], sock.getpeername()[:2], kernel_view.read(sock)

    local, peer, kernel = asyncio.run(fetch())
    assert [path for _, path in http_server.requests] == [target]
    assert http_server.client_addresses() == [local]
    assert peer == http_server.server_address[:2]
    assert (kernel.keepalive, kernel.idle_s, kernel.probes) == (1, 3, 5)


def test_factory_checks_values_up_front() -> None:
    with pytest.raises(ValueError, match="TCP_KEEPCNT"):
        netkeepalive.aiohttp.socket_factory(probes=0)
    with pytest.raises(TypeError, match="user_timeout"):
        netkeepalive.aiohttp.socket_factory(user_timeout="1s")  # type: ignore[arg-type]


def test_factory_makes_a_configured_unconnected_socket() -> None:
    factory = netkeepalive.aiohttp.socket_factory(interval=7_000)
    info = socket.getaddrinfo("127.0.0.1", 80, socket.AF_INET, socket.SOCK_STREAM)[0]
    with factory(info) as sock:
        assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7


def test_older_aiohttp_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # aiohttp before 3.12 cannot be installed beside this one: fake its version.
    monkeypatch.setattr(aiohttp, "__version__", "3.11.18")
    monkeypatch.delitem(sys.modules, "netkeepalive.aiohttp")
    monkeypatch.delattr(netkeepalive, "aiohttp", raising=False)
    with pytest.raises(
        ImportError, match=r"aiohttp 3\.12 or later.*aiohttp 3\.11\.18 is installed"
    ):
        importlib.import_module("netkeepalive.aiohttp")
    assert "netkeepalive.aiohttp" not in sys.modules

"""netkeepalive.httpx.Client/AsyncClient and the transports, directly and through proxies.

The proxies are local: the test HTTP server answers a proxied request
itself (it gets the absolute URL), and a CONNECT proxy answers 403 after
reading the client's socket.  Each test reads the client's own socket with
``sock.getsockopt``: the response's network stream hands it out
(``get_extra_info("socket")``), and its local address is the client
address the server recorded.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Callable

import pytest
from helpers import kernel_view
from helpers.kernel_view import Kernel
from helpers.wire_servers import LoopbackHTTPServer, QuietHandler, serving

import netkeepalive

httpx = pytest.importorskip("httpx")
import httpcore  # noqa: E402  (httpx's own dependency)

import netkeepalive.httpx  # noqa: E402

pytestmark = kernel_view.linux_only

WANTED = Kernel(1, 10, 5, 3, 30_000)
LOCAL_TARGET = "http://127.0.0.1:1/through-proxy"  # never contacted: the proxy answers


def _closed_port() -> int:
    """A loopback port nobody listens on (a proxy there refuses connections)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class _ConnectHandler(QuietHandler):
    server: _ConnectProxy

    def do_CONNECT(self) -> None:
        # The client's end of this connection is a socket in this process.
        self.server.seen.append((self.path, kernel_view.read_peer(self.connection)))
        self.send_error(403, "no tunnels here")


class _ConnectProxy(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__(_ConnectHandler)
        self.seen: list[tuple[str, Kernel]] = []


@pytest.fixture
def connect_proxy() -> Iterator[_ConnectProxy]:
    """An HTTPS proxy on 127.0.0.1 that reads each client's socket, then refuses the tunnel."""
    server = _ConnectProxy()
    with serving(server):
        yield server


# -- Client, direct --------------------------------------------------------------


def test_client_configures_the_pooled_connection(
    http_server: Any, example: Callable[[str], ModuleType]
) -> None:
    with example("httpx_client").make_keepalive_client() as client:
        first = client.get(http_server.url)
        second = client.get(http_server.url)
        assert (first.status_code, second.text) == (200, "ok\n")
        sock = kernel_view.httpx_socket(second)
        assert kernel_view.httpx_socket(first) is sock
        assert http_server.client_addresses() == [sock.getsockname()] * 2
        assert kernel_view.read(sock) == WANTED


def test_sdk_client_from_a_detection_budget(
    http_server: Any, example: Callable[[str], ModuleType]
) -> None:
    budget = netkeepalive.detect_within(60_000)
    with example("httpx_client").make_sdk_http_client() as client:
        sock = kernel_view.httpx_socket(client.get(http_server.url))
        assert http_server.client_addresses() == [sock.getsockname()]
        assert kernel_view.read(sock) == kernel_view.expected(budget)


def test_client_keeps_the_callers_limits(http_server: Any) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with netkeepalive.httpx.Client(probes=4, limits=limits, http1=True, verify=False) as client:
        pool = client._transport._pool  # httpx's httpcore.ConnectionPool
        assert pool._max_connections == 1
        sock = kernel_view.httpx_socket(client.get(http_server.url))
        assert http_server.client_addresses() == [sock.getsockname()]
        assert kernel_view.read(sock)[:1] == (1,)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4


def test_client_checks_values_before_building() -> None:
    with pytest.raises(ValueError, match="TCP_KEEPCNT"):
        netkeepalive.httpx.Client(probes=0)
    with pytest.raises(TypeError, match="idle"):
        netkeepalive.httpx.AsyncClient(idle="10s")  # type: ignore[arg-type]


def test_client_uses_a_given_transport_as_it_is(http_server: Any) -> None:
    transport = httpx.HTTPTransport()
    with netkeepalive.httpx.Client(idle=5_000, transport=transport) as client:
        assert client._transport is transport
        sock = kernel_view.httpx_socket(client.get(http_server.url))
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


# -- Client, proxies from the environment --------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_client_configures_the_connection_to_an_environment_proxy(
    http_server: Any, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, http_server.url)
    with netkeepalive.httpx.Client(idle=4_000, interval=2_000) as client:
        response = client.get(LOCAL_TARGET)
        assert response.status_code == 200
        # The test server played the proxy: it got the absolute URL.
        assert [path for _, path in http_server.requests] == [LOCAL_TARGET]
        sock = kernel_view.httpx_socket(response)
        assert sock.getpeername() == http_server.server_address[:2]
        assert http_server.client_addresses() == [sock.getsockname()]
        keepalive, idle, interval, *_ = kernel_view.read(sock)
        assert (keepalive, idle, interval) == (1, 4, 2)


@pytest.mark.skipif(
    "proxy" not in inspect.signature(httpx.Client).parameters,
    reason="httpx before 0.26 has no Client(proxy=...)",
)
def test_client_configures_the_connection_to_a_given_proxy(http_server: Any) -> None:
    with netkeepalive.httpx.Client(proxy=http_server.url, probes=5, trust_env=False) as client:
        sock = kernel_view.httpx_socket(client.get(LOCAL_TARGET))
        assert [path for _, path in http_server.requests] == [LOCAL_TARGET]
        assert http_server.client_addresses() == [sock.getsockname()]
        assert kernel_view.read(sock)[:1] == (1,)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 5


def test_client_configures_the_tunnel_to_an_https_proxy(
    connect_proxy: _ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    client = netkeepalive.httpx.Client(idle=10_000, interval=5_000, probes=3, user_timeout=30_000)
    with client, pytest.raises(httpx.ProxyError, match="403"):
        client.get("https://127.0.0.1:1/")
    # Read inside the proxy, from the client's socket, when CONNECT arrived.
    assert connect_proxy.seen == [("127.0.0.1:1", WANTED)]


def test_no_proxy_and_trust_env_still_bypass_the_proxy(
    http_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    with netkeepalive.httpx.Client(probes=6, trust_env=False) as client:
        sock = kernel_view.httpx_socket(client.get(http_server.url))
        assert sock.getpeername() == http_server.server_address[:2]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 6
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with netkeepalive.httpx.Client(probes=7) as client:
        sock = kernel_view.httpx_socket(client.get(http_server.url))
        assert sock.getpeername() == http_server.server_address[:2]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 7
    monkeypatch.delenv("NO_PROXY")
    with netkeepalive.httpx.Client(probes=8) as client, pytest.raises(httpx.ConnectError):
        client.get(http_server.url)  # to the dead proxy: the environment counts
    assert len(http_server.requests) == 2


def test_plain_client_with_a_transport_drops_the_environment_proxy(
    http_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why Client exists: httpx ignores *_PROXY once a transport is passed."""
    monkeypatch.setenv("HTTP_PROXY", http_server.url)
    transport = netkeepalive.httpx.HTTPTransport(idle=4_000)
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.get(LOCAL_TARGET)  # straight to port 1, refused
    assert http_server.requests == []


def test_async_client_configures_the_connection_to_an_environment_proxy(
    http_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", http_server.url)

    async def fetch() -> tuple[tuple[str, int], tuple[str, int], Kernel]:
        budget = netkeepalive.detect_within(30_000)
        async with netkeepalive.httpx.AsyncClient(**budget) as client:
            response = await client.get(LOCAL_TARGET)
            assert response.status_code == 200
            sock = kernel_view.httpx_socket(response)
            return sock.getsockname(), sock.getpeername(), kernel_view.read(sock)

    local, peer, kernel = asyncio.run(fetch())
    assert [path for _, path in http_server.requests] == [LOCAL_TARGET]
    assert http_server.client_addresses() == [local]
    assert peer == http_server.server_address[:2]
    budget = netkeepalive.detect_within(30_000)
    assert kernel == kernel_view.expected(budget)


def test_async_client_direct(http_server: Any) -> None:
    async def fetch() -> tuple[tuple[str, int], Kernel]:
        async with netkeepalive.httpx.AsyncClient(
            idle=10_000, interval=5_000, probes=3, user_timeout=30_000
        ) as client:
            sock = kernel_view.httpx_socket(await client.get(http_server.url))
            return sock.getsockname(), kernel_view.read(sock)

    local, kernel = asyncio.run(fetch())
    assert http_server.client_addresses() == [local]
    assert kernel == WANTED


# -- the transports through a proxy: httpcore's dropped socket_options -------------


@pytest.mark.skipif(
    not httpcore.__version__.startswith("1.0."),
    reason="checks httpcore 1.0.x, whose HTTPProxy drops socket_options",
)
def test_plain_transport_through_a_proxy_drops_socket_options(http_server: Any) -> None:
    """The httpcore behaviour the transports work around."""
    options = netkeepalive.socket_options(idle=4_000)
    transport = httpx.HTTPTransport(proxy=httpx.Proxy(http_server.url), socket_options=options)
    with httpx.Client(transport=transport) as client:
        sock = kernel_view.httpx_socket(client.get(LOCAL_TARGET))
        assert sock.getpeername() == http_server.server_address[:2]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_transport_through_a_proxy_keeps_its_socket_options(http_server: Any) -> None:
    transport = netkeepalive.httpx.HTTPTransport(
        proxy=httpx.Proxy(http_server.url),
        idle=10_000,
        interval=5_000,
        probes=3,
        user_timeout=30_000,
        socket_options=[(socket.IPPROTO_IP, socket.IP_TOS, 0x04)],
    )
    with httpx.Client(transport=transport) as client:
        sock = kernel_view.httpx_socket(client.get(LOCAL_TARGET))
        assert [path for _, path in http_server.requests] == [LOCAL_TARGET]
        assert http_server.client_addresses() == [sock.getsockname()]
        assert sock.getpeername() == http_server.server_address[:2]
        assert kernel_view.read(sock) == WANTED
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x04


def test_async_transport_through_a_proxy_keeps_its_socket_options(http_server: Any) -> None:
    async def fetch() -> tuple[tuple[str, int], Kernel]:
        transport = netkeepalive.httpx.AsyncHTTPTransport(
            proxy=httpx.Proxy(http_server.url), probes=5
        )
        async with httpx.AsyncClient(transport=transport) as client:
            sock = kernel_view.httpx_socket(await client.get(LOCAL_TARGET))
            return sock.getsockname(), kernel_view.read(sock)

    local, kernel = asyncio.run(fetch())
    assert http_server.client_addresses() == [local]
    assert (kernel.keepalive, kernel.probes) == (1, 5)


def test_transport_from_a_detection_budget(http_server: Any) -> None:
    budget = netkeepalive.detect_within(12_000)
    transport = netkeepalive.httpx.HTTPTransport(proxy=httpx.Proxy(http_server.url), **budget)
    with httpx.Client(transport=transport) as client:
        sock = kernel_view.httpx_socket(client.get(LOCAL_TARGET))
        assert http_server.client_addresses() == [sock.getsockname()]
        assert kernel_view.read(sock) == kernel_view.expected(budget)


def test_backend_connect_tcp_adds_the_options(http_server: Any) -> None:
    """The fix itself: connect_tcp without socket_options, as httpcore's proxies call it."""
    options = netkeepalive.socket_options(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )
    backend = netkeepalive.httpx._KeepAliveBackend(httpcore.SyncBackend(), options)
    host, port = http_server.server_address[:2]
    stream = backend.connect_tcp(host, port, timeout=10)
    try:
        sock = stream.get_extra_info("socket")
        assert kernel_view.read(sock) == WANTED
    finally:
        stream.close()
    # With the caller's own list, both: theirs first, then each option not in it.
    tos = (socket.IPPROTO_IP, socket.IP_TOS, 0x08)
    stream = backend.connect_tcp(host, port, timeout=10, socket_options=[tos])
    try:
        sock = stream.get_extra_info("socket")
        assert kernel_view.read(sock) == WANTED
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x08
    finally:
        stream.close()

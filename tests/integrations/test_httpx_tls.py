"""netkeepalive.httpx over TLS, HTTP/2, an HTTPS tunnel (CONNECT) and SOCKS5, all on loopback.

The certificates are made for each test (tls_servers.make_certificates);
the servers and proxies read the client's socket with ``sock.getsockopt``
when a request or tunnel request arrives, and the tests read it again
from the response's network stream.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import kernel_view, tls_servers
from helpers.kernel_view import Kernel
from helpers.tls_servers import Certificates, Request, Tunnel

import netkeepalive

httpx = pytest.importorskip("httpx")
pytest.importorskip("cryptography", reason="the tests make their certificates with it")

import netkeepalive.httpx  # noqa: E402

pytestmark = kernel_view.linux_only

KEEPALIVE = {"idle": 10_000, "interval": 5_000, "probes": 3, "user_timeout": 30_000}
WANTED = Kernel(1, 10, 5, 3, 30_000)


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return tls_servers.make_certificates(tmp_path)


def _trusting(certs: Certificates) -> ssl.SSLContext:
    """What httpx takes as ``verify=``: a context that trusts the test CA only."""
    return ssl.create_default_context(cafile=str(certs.ca))


def _url(server: Any) -> str:
    host, port = server.address
    return f"https://{host}:{port}/"


def _h2() -> None:
    pytest.importorskip("h2", reason="httpx needs the h2 package for http2=True")


def _socks() -> None:
    pytest.importorskip("socksio", reason="httpx needs the socksio package for SOCKS proxies")


@pytest.fixture
def https(certs: Certificates) -> Iterator[Any]:
    with tls_servers.https_server(certs) as server:
        yield server


# -- TLS: verify= and cert= ---------------------------------------------------------


def test_client_over_tls_with_the_callers_verify(https: Any, certs: Certificates) -> None:
    with netkeepalive.httpx.Client(verify=_trusting(certs), **KEEPALIVE) as client:
        response = client.get(_url(https))
        assert (response.status_code, response.text) == (200, "ok\n")
        sock = kernel_view.httpx_socket(response)
        assert isinstance(sock, ssl.SSLSocket)
        local = sock.getsockname()[:2]
        assert kernel_view.read(sock) == WANTED
    assert https.requests == [Request(local, "http/1.1", "/", None, WANTED)]


def test_client_keeps_verify_as_a_path(https: Any, certs: Certificates) -> None:
    with warnings.catch_warnings():
        # httpx 0.28 deprecates a path in favour of an SSLContext; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        client = netkeepalive.httpx.Client(verify=str(certs.ca), probes=4)
    with client:
        assert client.get(_url(https)).status_code == 200
    ((_client, protocol, _path, _subject, kernel),) = https.requests
    assert (protocol, kernel.keepalive, kernel.probes) == ("http/1.1", 1, 4)


def test_client_keeps_a_client_certificate(https: Any, certs: Certificates) -> None:
    with warnings.catch_warnings():
        # httpx 0.28 deprecates cert= in favour of load_cert_chain() on verify=.
        # (It also drops cert= when verify= is a path, so this uses a context.)
        warnings.simplefilter("ignore", DeprecationWarning)
        client = netkeepalive.httpx.Client(
            verify=_trusting(certs), cert=str(certs.client), user_timeout=9_000
        )
    with client:
        assert client.get(_url(https)).status_code == 200
    ((_client, _protocol, _path, subject, kernel),) = https.requests
    assert (subject, kernel.keepalive, kernel.user_timeout_ms) == ("test client", 1, 9_000)


def test_client_still_verifies_the_server(https: Any) -> None:
    """The keepalive client leaves httpx's verification on: the test CA is not trusted."""
    with netkeepalive.httpx.Client(probes=4) as client, pytest.raises(httpx.ConnectError):
        client.get(_url(https))
    assert https.requests == []


# -- HTTP/2 ---------------------------------------------------------------------------


def test_client_over_http2(certs: Certificates) -> None:
    _h2()
    budget = netkeepalive.detect_within(30_000)
    client = netkeepalive.httpx.Client(http2=True, verify=_trusting(certs), **budget)
    with tls_servers.https_server(certs, http2=True) as server, client:
        first = client.get(_url(server))
        second = client.get(_url(server) + "again")
        assert (first.http_version, second.text) == ("HTTP/2", "ok\n")
        sock = kernel_view.httpx_socket(second)
        assert kernel_view.httpx_socket(first) is sock  # both streams on one connection
        local = sock.getsockname()[:2]
        assert kernel_view.read(sock) == kernel_view.expected(budget)
    expected = kernel_view.expected(budget)
    assert server.requests == [
        Request(local, "h2", "/", None, expected),
        Request(local, "h2", "/again", None, expected),
    ]


def test_async_client_over_http2(certs: Certificates) -> None:
    _h2()

    async def fetch(url: str) -> tuple[str, tuple[str, int], Kernel]:
        async with netkeepalive.httpx.AsyncClient(
            http2=True, verify=_trusting(certs), **KEEPALIVE
        ) as client:
            response = await client.get(url)
            sock = kernel_view.httpx_socket(response)
            return response.http_version, sock.getsockname()[:2], kernel_view.read(sock)

    with tls_servers.https_server(certs, http2=True) as server:
        version, local, kernel = asyncio.run(fetch(_url(server)))
    assert (version, kernel) == ("HTTP/2", WANTED)
    assert server.requests == [Request(local, "h2", "/", None, WANTED)]


def test_client_with_http1_only_does_not_offer_http2(certs: Certificates) -> None:
    _h2()
    with tls_servers.https_server(certs, http2=True) as server:
        client = netkeepalive.httpx.Client(http1=True, http2=False, verify=_trusting(certs))
        with client:
            assert client.get(_url(server)).http_version == "HTTP/1.1"
    assert [request.protocol for request in server.requests] == ["http/1.1"]


# -- HTTPS through an HTTP proxy's tunnel (CONNECT) --------------------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_client_https_through_an_environment_connect_proxy(
    certs: Certificates, monkeypatch: pytest.MonkeyPatch, http2: bool
) -> None:
    if http2:
        _h2()
    with (
        tls_servers.connect_proxy() as proxy,
        tls_servers.https_server(certs, http2=http2) as server,
    ):
        target, proxy_address = server.address, proxy.address
        monkeypatch.setenv("HTTPS_PROXY", "http://{}:{}".format(*proxy_address))
        with netkeepalive.httpx.Client(http2=http2, verify=_trusting(certs), **KEEPALIVE) as client:
            response = client.get(_url(server))
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            sock = kernel_view.httpx_socket(
                response
            )  # TLS to the server, over the TCP connection to the proxy
            assert sock.getpeername()[:2] == proxy_address
            local = sock.getsockname()[:2]
            assert kernel_view.read(sock) == WANTED
    assert proxy.tunnels == [Tunnel(target, WANTED)]
    assert proxy.clients == [local]
    # The request did arrive through the tunnel: from the proxy's own
    # connection, which nobody gave keepalive.
    ((from_proxy, protocol, path, _cert, kernel),) = server.requests
    assert (protocol, path, kernel.keepalive) == ("h2" if http2 else "http/1.1", "/", 0)
    assert from_proxy != local


def test_transport_https_through_a_connect_proxy(certs: Certificates) -> None:
    with tls_servers.connect_proxy() as proxy, tls_servers.https_server(certs) as server:
        target = server.address
        transport = netkeepalive.httpx.HTTPTransport(
            proxy=httpx.Proxy("http://{}:{}".format(*proxy.address)),
            verify=_trusting(certs),
            probes=6,
        )
        with httpx.Client(transport=transport) as client:
            assert client.get(_url(server)).status_code == 200
    ((tunnel, kernel),) = proxy.tunnels
    assert (tunnel, kernel.keepalive, kernel.probes) == (target, 1, 6)


@pytest.mark.skipif(
    "ssl_context" not in inspect.signature(httpx.Proxy).parameters,
    reason="httpx before 0.26 takes no TLS settings for the proxy itself",
)
def test_client_https_through_an_https_proxy(certs: Certificates) -> None:
    """TLS to the proxy, and the server's TLS inside its tunnel."""
    with tls_servers.connect_proxy(certs) as proxy, tls_servers.https_server(certs) as server:
        target, proxy_address = server.address, proxy.address
        to_proxy = httpx.Proxy("https://{}:{}".format(*proxy_address), ssl_context=_trusting(certs))
        client = netkeepalive.httpx.Client(proxy=to_proxy, verify=_trusting(certs), **KEEPALIVE)
        with client:
            response = client.get(_url(server))
            assert response.text == "ok\n"
            local = kernel_view.httpx_socket(response).getsockname()[:2]
    assert proxy.tls_clients == [local]
    assert proxy.tunnels == [Tunnel(target, WANTED)]
    assert len(server.requests) == 1


# -- SOCKS5 ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_client_through_a_socks5_proxy_from_all_proxy(
    certs: Certificates, http_server: Any, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    _socks()
    with tls_servers.socks5_proxy() as proxy, tls_servers.https_server(certs) as https:
        monkeypatch.setenv("ALL_PROXY", "socks5://{}:{}".format(*proxy.address))
        server_address = https.address if scheme == "https" else http_server.server_address[:2]
        url = _url(https) if scheme == "https" else http_server.url
        with netkeepalive.httpx.Client(verify=_trusting(certs), **KEEPALIVE) as client:
            response = client.get(url)
            assert response.text == "ok\n"
            sock = kernel_view.httpx_socket(response)
            assert sock.getpeername()[:2] == proxy.address
            local = sock.getsockname()[:2]
            assert kernel_view.read(sock) == WANTED
    assert proxy.tunnels == [Tunnel(server_address, WANTED)]
    assert proxy.clients == [local]
    assert len(https.requests if scheme == "https" else http_server.requests) == 1


def test_async_transport_through_a_socks5_proxy(http_server: Any) -> None:
    _socks()

    async def fetch(proxy_url: str) -> int:
        transport = netkeepalive.httpx.AsyncHTTPTransport(
            proxy=httpx.Proxy(proxy_url), **netkeepalive.detect_within(20_000)
        )
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(http_server.url)
            return response.status_code

    with tls_servers.socks5_proxy() as proxy:
        assert asyncio.run(fetch("socks5://{}:{}".format(*proxy.address))) == 200
    expected = kernel_view.expected(netkeepalive.detect_within(20_000))
    assert proxy.tunnels == [Tunnel(http_server.server_address[:2], expected)]

"""requests, urllib3 and httpx against a real HTTP server on 127.0.0.1.

Each test reads the keepalive settings back with ``sock.getsockopt`` (see
kernel_view) from the socket the client's pool actually used: the pooled
connection's socket has as its local address the peer address the server
recorded for every request.
"""

from __future__ import annotations

import asyncio
import socket
from types import ModuleType
from typing import Any, Callable

import pytest
from helpers import kernel_view
from helpers.kernel_view import Kernel

pytestmark = kernel_view.linux_only

WANTED = Kernel(1, 10, 5, 3, 30_000)
LOCAL_TARGET = "http://127.0.0.1:1/through-proxy"  # never contacted: the proxy answers


def _tos(sock: Any) -> int:
    return int(sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS))


def _nodelay(sock: Any) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def _pooled_socket(manager: Any) -> socket.socket:
    """The one open socket waiting in a urllib3 pool manager's only pool.

    ``manager.pools`` maps a pool key (scheme, host, port and the TLS and
    pool settings the caller used) to the ``HTTPConnectionPool`` for it;
    these tests talk to one host, so there is exactly one.  ``pool.pool``
    is the pool's queue (a ``queue.LifoQueue``) of
    ``urllib3.connection.HTTPConnection`` objects, ``None`` for unused
    slots; a connection that has connected holds its socket in ``.sock``
    (http.client's attribute).  After a request has been read completely
    its connection is back in this queue.
    """
    keys = list(manager.pools.keys())
    assert len(keys) == 1, keys
    pool = manager.pools[keys[0]]
    conns = [c for c in list(pool.pool.queue) if c is not None and c.sock is not None]
    assert len(conns) == 1, conns
    sock: socket.socket = conns[0].sock
    return sock


# -- requests ----------------------------------------------------------------


def test_requests_adapter_configures_the_pooled_connection(
    http_server: Any, example: Callable[[str], ModuleType]
) -> None:
    pytest.importorskip("requests")
    session = example("requests_session").make_session()
    with session:
        for _ in range(2):
            response = session.get(http_server.url, timeout=10)
            assert response.status_code == 200
            assert response.text == "ok\n"
        # requests -> the mounted adapter -> its urllib3 PoolManager -> its
        # one pool -> the idle connection in the pool's queue.
        adapter = session.get_adapter(http_server.url)
        sock = _pooled_socket(adapter.poolmanager)
        # Both requests went over this one socket (HTTP/1.1 keep-alive).
        assert http_server.client_addresses() == [sock.getsockname()] * 2
        assert kernel_view.read(sock) == WANTED
        assert _nodelay(sock)  # urllib3's default socket option is kept


def test_plain_requests_session_leaves_keepalive_off(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    with requests.Session() as session:
        assert session.get(http_server.url, timeout=10).status_code == 200
        adapter = session.get_adapter(http_server.url)
        sock = _pooled_socket(adapter.poolmanager)
        assert http_server.client_addresses() == [sock.getsockname()]
        assert kernel_view.read(sock).keepalive == 0


def test_requests_adapter_keeps_the_callers_socket_options(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    from netkeepalive.requests import KeepAliveAdapter

    caller = [
        (socket.IPPROTO_IP, socket.IP_TOS, 0x10),  # and no TCP_NODELAY
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 9),  # overridden by probes=2
    ]
    adapter = KeepAliveAdapter(idle=3_000, probes=2, socket_options=caller, pool_maxsize=4)
    with requests.Session() as session:
        session.mount("http://", adapter)
        assert session.get(http_server.url, timeout=10).status_code == 200
        sock = _pooled_socket(adapter.poolmanager)
        kernel = kernel_view.read(sock)
        assert (kernel.keepalive, kernel.idle_s, kernel.probes) == (1, 3, 2)
        assert _tos(sock) == 0x10
        assert not _nodelay(sock)


def test_requests_adapter_configures_the_connection_to_a_proxy(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    from netkeepalive.requests import KeepAliveAdapter

    adapter = KeepAliveAdapter(idle=4_000, interval=2_000)
    with requests.Session() as session:
        session.mount("http://", adapter)
        response = session.get(LOCAL_TARGET, proxies={"http": http_server.url}, timeout=10)
        assert response.status_code == 200
        # The test server played the proxy: it got the absolute URL.
        assert [path for _, path in http_server.requests] == [LOCAL_TARGET]
        manager = adapter.proxy_manager[http_server.url]
        sock = _pooled_socket(manager)
        assert sock.getpeername() == http_server.server_address[:2]
        kernel = kernel_view.read(sock)
        assert (kernel.keepalive, kernel.idle_s, kernel.interval_s) == (1, 4, 2)


def test_requests_adapter_checks_values_up_front() -> None:
    pytest.importorskip("requests")
    from netkeepalive.requests import KeepAliveAdapter

    with pytest.raises(ValueError, match="TCP_KEEPCNT"):
        KeepAliveAdapter(probes=0)
    with pytest.raises(TypeError, match="idle"):
        KeepAliveAdapter(idle="10s")  # type: ignore[arg-type]


def test_requests_adapter_survives_pickling(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    import pickle

    from netkeepalive.requests import KeepAliveAdapter

    adapter = pickle.loads(pickle.dumps(KeepAliveAdapter(idle=6_000)))
    with requests.Session() as session:
        session.mount("http://", adapter)
        assert session.get(http_server.url, timeout=10).status_code == 200
        sock = _pooled_socket(adapter.poolmanager)
        assert kernel_view.read(sock)[:2] == (1, 6)


# -- urllib3 -----------------------------------------------------------------


def test_urllib3_pool_manager_configures_the_pooled_connection(
    http_server: Any, example: Callable[[str], ModuleType]
) -> None:
    pytest.importorskip("urllib3")
    with example("urllib3_pool").make_pool_manager() as http:
        for _ in range(2):
            response = http.request("GET", http_server.url, timeout=10)
            assert response.status == 200
            assert response.data == b"ok\n"
        # PoolManager -> its one pool -> the idle connection in its queue.
        sock = _pooled_socket(http)
        assert http_server.client_addresses() == [sock.getsockname()] * 2
        assert kernel_view.read(sock) == WANTED
        assert _nodelay(sock)


def test_urllib3_socket_options_configure_the_pooled_connection(
    http_server: Any, example: Callable[[str], ModuleType]
) -> None:
    pytest.importorskip("urllib3")
    with example("urllib3_pool").make_pool_manager_with_socket_options() as http:
        assert http.request("GET", http_server.url, timeout=10).status == 200
        sock = _pooled_socket(http)
        assert http_server.client_addresses() == [sock.getsockname()]
        assert kernel_view.read(sock) == WANTED
        assert _nodelay(sock)


def test_urllib3_pool_manager_keeps_the_callers_socket_options(http_server: Any) -> None:
    pytest.importorskip("urllib3")
    import netkeepalive.urllib3

    caller = [(socket.IPPROTO_IP, socket.IP_TOS, 0x08)]
    with netkeepalive.urllib3.PoolManager(user_timeout=12_345, socket_options=caller) as http:
        assert http.request("GET", http_server.url, timeout=10).status == 200
        sock = _pooled_socket(http)
        kernel = kernel_view.read(sock)
        assert (kernel.keepalive, kernel.user_timeout_ms) == (1, 12_345)
        assert _tos(sock) == 0x08
        assert not _nodelay(sock)


def test_urllib3_proxy_manager_configures_the_connection_to_the_proxy(
    http_server: Any,
) -> None:
    pytest.importorskip("urllib3")
    import netkeepalive.urllib3

    with netkeepalive.urllib3.ProxyManager(http_server.url, probes=7) as http:
        assert http.request("GET", LOCAL_TARGET, timeout=10).status == 200
        assert [path for _, path in http_server.requests] == [LOCAL_TARGET]
        sock = _pooled_socket(http)
        assert sock.getpeername() == http_server.server_address[:2]
        kernel = kernel_view.read(sock)
        assert (kernel.keepalive, kernel.probes) == (1, 7)


def test_urllib3_kernel_refusal_fails_the_request(http_server: Any, refuse_option: Any) -> None:
    """An option the kernel refuses fails the connection instead of passing silently."""
    urllib3 = pytest.importorskip("urllib3")
    import errno
    import socket

    import netkeepalive.urllib3

    # EINVAL cannot be provoked with a valid value on Linux.
    refuse_option(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, errno.EINVAL)
    with netkeepalive.urllib3.PoolManager(probes=5, retries=False) as http:
        with pytest.raises(urllib3.exceptions.ProtocolError) as info:
            http.request("GET", http_server.url, timeout=10)
        cause = info.value.args[1]
        assert isinstance(cause, netkeepalive.SocketOptionError)
        assert (cause.errno, str(cause)) == (
            errno.EINVAL,
            "configure: setsockopt(TCP_KEEPCNT): [Errno 22] Invalid argument; nothing was changed",
        )
        pool = http.connection_from_url(http_server.url)
        assert [c for c in list(pool.pool.queue) if c is not None and c.sock] == []
    assert http_server.requests == []


def test_urllib3_connection_class_on_a_single_pool(http_server: Any) -> None:
    urllib3 = pytest.importorskip("urllib3")
    from netkeepalive.urllib3 import keepalive_connection_class

    conn_cls = keepalive_connection_class(idle=7_000, probes=4)
    assert keepalive_connection_class(idle=7_000, probes=4) is conn_cls
    assert issubclass(conn_cls, urllib3.connection.HTTPConnection)
    host, port = http_server.server_address[:2]
    with urllib3.HTTPConnectionPool(host, port) as pool:
        pool.ConnectionCls = conn_cls
        assert pool.request("GET", "/", timeout=10).status == 200
        (conn,) = [c for c in list(pool.pool.queue) if c is not None and c.sock is not None]
        assert http_server.client_addresses() == [conn.sock.getsockname()]
        kernel = kernel_view.read(conn.sock)
        assert (kernel.keepalive, kernel.idle_s, kernel.probes) == (1, 7, 4)


def test_urllib3_pool_classes_for_a_manager_built_by_hand(http_server: Any) -> None:
    urllib3 = pytest.importorskip("urllib3")
    from netkeepalive.urllib3 import keepalive_pool_classes

    with urllib3.PoolManager() as http:
        http.pool_classes_by_scheme = keepalive_pool_classes(
            http.pool_classes_by_scheme, user_timeout=4_000
        )
        assert http.request("GET", http_server.url, timeout=10).status == 200
        sock = _pooled_socket(http)
        kernel = kernel_view.read(sock)
        assert (kernel.keepalive, kernel.user_timeout_ms) == (1, 4_000)
    with pytest.raises(ValueError, match="TCP_USER_TIMEOUT"):
        keepalive_pool_classes({}, user_timeout=-1)


# -- httpx -------------------------------------------------------------------


def test_httpx_socket_options_configure_the_pooled_connection(
    http_server: Any, example: Callable[[str], ModuleType]
) -> None:
    pytest.importorskip("httpx")
    with example("httpx_client").make_client() as client:
        first = client.get(http_server.url)
        second = client.get(http_server.url)
        assert (first.status_code, second.text) == (200, "ok\n")
        sock = kernel_view.httpx_socket(second)
        assert kernel_view.httpx_socket(first) is sock
        assert http_server.client_addresses() == [sock.getsockname()] * 2
        assert kernel_view.read(sock) == WANTED


def test_httpx_transport_keeps_the_callers_socket_options(http_server: Any) -> None:
    httpx = pytest.importorskip("httpx")
    import netkeepalive.httpx

    transport = netkeepalive.httpx.HTTPTransport(
        interval=9_000, socket_options=[(socket.IPPROTO_IP, socket.IP_TOS, 0x04)]
    )
    with httpx.Client(transport=transport) as client:
        response = client.get(http_server.url)
        sock = kernel_view.httpx_socket(response)
        assert http_server.client_addresses() == [sock.getsockname()]
        kernel = kernel_view.read(sock)
        assert (kernel.keepalive, kernel.interval_s) == (1, 9)
        assert _tos(sock) == 0x04


def test_httpx_async_transport_configures_the_pooled_connection(
    http_server: Any, example: Callable[[str], ModuleType]
) -> None:
    pytest.importorskip("httpx")
    make_async_client = example("httpx_client").make_async_client

    async def fetch() -> tuple[tuple[str, int], Kernel]:
        async with make_async_client() as client:
            response = await client.get(http_server.url)
            assert response.status_code == 200
            sock = kernel_view.httpx_socket(response)
            return sock.getsockname(), kernel_view.read(sock)

    address, kernel = asyncio.run(fetch())
    assert http_server.client_addresses() == [address]
    assert kernel == WANTED

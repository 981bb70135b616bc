"""install() reaches client libraries that know nothing about netkeepalive.

Each client talks to a real server on 127.0.0.1 (HTTP, S3's ListBuckets,
Redis's RESP, AMQP's handshake); the server records the address each
connection came from, which is the local address of the client's socket.
That socket is found among this process's open descriptors
(``/proc/self/fd``, see kernel_view) or through the client's own API, and
its options are read with the standard library's ``getsockopt``.

Some libraries set socket options themselves.  install() configures a
socket when it connects, so what a library sets *before* connecting is
replaced by the policy (redis-py's ``socket_keepalive_options``, urllib3's
``socket_options``), and what it sets *after* connecting replaces the
policy (py-amqp's ``socket_settings`` and its own defaults, httpx's
``socket_options``); the tests below pin down each case.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Tuple

import pytest
from helpers import kernel_view
from helpers.kernel_view import Kernel
from helpers.wire_servers import amqp_server, resp_server, serving

import netkeepalive as nk
from netkeepalive import _install

pytestmark = kernel_view.linux_only

TCP = socket.IPPROTO_TCP
POLICY = {"idle": 11_000, "interval": 3_000, "probes": 4, "user_timeout": 23_456}
#: (SO_KEEPALIVE, TCP_KEEPIDLE s, TCP_KEEPINTVL s, TCP_KEEPCNT, TCP_USER_TIMEOUT ms)
EXPECTED = Kernel(1, 11, 3, 4, 23_456)


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


def client_socket(local: Tuple[str, int], server: Tuple[str, int]) -> Kernel:
    """The options of this process's socket from *local* to *server*."""
    sock = kernel_view.find_socket(local, server)
    assert sock is not None, (local, server)
    with sock:
        return kernel_view.read(sock)


def http_client_socket(http_server: Any) -> Kernel:
    return client_socket(only_client(http_server), http_server.server_address[:2])


def fresh_tcp() -> Kernel:
    """What a new TCP socket reports on this system."""
    with socket.socket() as sock:
        return kernel_view.read(sock)


# -- HTTP clients --------------------------------------------------------------


def test_http_client(http_server: Any) -> None:
    nk.install(**POLICY)
    host, port = http_server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok\n"
        assert conn.sock is not None
        assert conn.sock.getsockname() == only_client(http_server)
        assert kernel_view.read(conn.sock) == EXPECTED
    finally:
        conn.close()


def test_urllib_request(http_server: Any) -> None:
    nk.install(**POLICY)
    with urllib.request.urlopen(http_server.url, timeout=10) as response:
        # The response still holds the connection's socket open.
        assert http_client_socket(http_server) == EXPECTED
        assert response.read() == b"ok\n"


def test_the_server_side_is_untouched_here(http_server: Any) -> None:
    """The test server listened before install(): its accepted socket keeps the defaults."""
    nk.install(**POLICY)
    host, port = http_server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        assert conn.sock is not None
        server_end = client_socket((host, port), conn.sock.getsockname())
        assert server_end == fresh_tcp()
        assert server_end.keepalive == 0
    finally:
        conn.close()


def test_urllib3(http_server: Any) -> None:
    urllib3 = pytest.importorskip("urllib3")
    nk.install(**POLICY)
    with urllib3.PoolManager() as manager:
        response = manager.request("GET", http_server.url, timeout=10)
        assert response.status == 200
        assert http_client_socket(http_server) == EXPECTED


@pytest.mark.parametrize(("module", "client_class"), [("requests", "Session"), ("httpx", "Client")])
def test_sync_client(http_server: Any, module: str, client_class: str) -> None:
    """requests.Session and httpx.Client."""
    make_client = getattr(pytest.importorskip(module), client_class)
    nk.install(**POLICY)
    with make_client() as client:
        assert client.get(http_server.url, timeout=10).text == "ok\n"
        assert http_client_socket(http_server) == EXPECTED


def test_httpx_async(http_server: Any) -> None:
    httpx = pytest.importorskip("httpx")

    async def main() -> Kernel:
        async with httpx.AsyncClient() as client:
            response = await client.get(http_server.url, timeout=10)
            assert response.text == "ok\n"
            return http_client_socket(http_server)

    nk.install(**POLICY)
    assert asyncio.run(main()) == EXPECTED


def test_aiohttp(http_server: Any) -> None:
    aiohttp = pytest.importorskip("aiohttp")

    async def main() -> Kernel:
        async with aiohttp.ClientSession() as session:
            async with session.get(http_server.url) as response:
                assert await response.text() == "ok\n"
            # The connection waits in the session's pool for the next request.
            return http_client_socket(http_server)

    nk.install(**POLICY)
    assert asyncio.run(main()) == EXPECTED


def test_botocore_s3_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's engine with ``tcp_keepalive=True``, which alone sets only SO_KEEPALIVE."""
    pytest.importorskip("botocore")
    import botocore.config
    import botocore.session

    s3 = importlib.import_module("test_botocore_client")  # its ListBuckets server
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    server = s3._S3()
    with serving(server):
        nk.install(**POLICY)
        client = botocore.session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=server.url,
            aws_access_key_id="AKIDLOCALTEST",
            aws_secret_access_key="local-test-secret",
            config=botocore.config.Config(retries={"max_attempts": 1}, tcp_keepalive=True),
        )
        try:
            response = client.list_buckets()
            assert [bucket["Name"] for bucket in response["Buckets"]] == ["local-bucket"]
            # The server read the client's socket while the request was in.
            ((local, path, seen),) = server.seen
            assert (path, seen) == ("/", EXPECTED)
            assert client_socket(local, server.server_address[:2]) == EXPECTED
        finally:
            client.close()


# -- Redis and AMQP --------------------------------------------------------------


def test_redis() -> None:
    redis = pytest.importorskip("redis")
    with resp_server() as server:
        nk.install(**POLICY)
        client = redis.Redis(*server.address, socket_timeout=10, protocol=2)
        try:
            assert client.ping() is True
            (local,) = server.clients
            assert client_socket(local, server.address) == EXPECTED
        finally:
            client.close()


def test_redis_keepalive_options_are_replaced_unless_only_lower() -> None:
    """redis-py sets its ``socket_keepalive_options`` before connecting: the policy comes after.

    With ``only_lower=True`` each value ends up the lower of the two.
    """
    redis = pytest.importorskip("redis")
    options = {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPCNT: 20}  # idle lower, probes higher
    results = []
    for only_lower in (False, True):
        with resp_server() as server:
            nk.install(**POLICY, only_lower=only_lower)
            client = redis.Redis(
                *server.address,
                socket_timeout=10,
                protocol=2,
                socket_keepalive=True,
                socket_keepalive_options=options,
            )
            try:
                assert client.ping() is True
                (local,) = server.clients
                results.append(client_socket(local, server.address))
            finally:
                client.close()
    assert results == [EXPECTED, Kernel(1, 5, 3, 4, 23_456)]


def test_py_amqp_sets_its_own_values_after_connecting() -> None:
    """py-amqp writes its socket_settings, or its own defaults, after the connect: they win.

    So kombu and Celery's py-amqp transport need ``socket_settings``
    (:func:`netkeepalive.keepalive_options`); install() alone changes nothing
    there but SO_KEEPALIVE, which py-amqp turns on anyway.
    """
    amqp = pytest.importorskip("amqp")
    defaults = amqp.transport.DEFAULT_SOCKET_SETTINGS
    py_amqp_defaults = Kernel(
        1,
        defaults["TCP_KEEPIDLE"],
        defaults["TCP_KEEPINTVL"],
        defaults["TCP_KEEPCNT"],
        defaults["TCP_USER_TIMEOUT"],
    )
    assert py_amqp_defaults != EXPECTED
    seen = []
    for settings in (None, nk.keepalive_options(**POLICY)):
        with amqp_server() as server:
            nk.install(**POLICY)
            conn = amqp.Connection(
                host="{}:{}".format(*server.address), connect_timeout=10, socket_settings=settings
            )
            conn.connect()
            try:
                sock = conn.transport.sock
                assert server.clients == [sock.getsockname()[:2]]
                seen.append(kernel_view.read(sock))
            finally:
                conn.close()
    assert seen == [py_amqp_defaults, EXPECTED]


def test_httpx_socket_options_set_after_connecting_win(http_server: Any) -> None:
    """httpcore applies ``socket_options`` once connected: they replace the policy's."""
    httpx = pytest.importorskip("httpx")
    nk.install(**POLICY)
    transport = httpx.HTTPTransport(socket_options=[(TCP, socket.TCP_KEEPIDLE, 99)])
    with httpx.Client(transport=transport) as client:
        assert client.get(http_server.url, timeout=10).text == "ok\n"
        assert http_client_socket(http_server) == EXPECTED._replace(idle_s=99)


def test_urllib3_socket_options_set_before_connecting_are_replaced(http_server: Any) -> None:
    urllib3 = pytest.importorskip("urllib3")
    nk.install(**POLICY)
    options = [(TCP, socket.TCP_KEEPIDLE, 99)]
    with urllib3.PoolManager(socket_options=options) as manager:
        assert manager.request("GET", http_server.url, timeout=10).status == 200
        assert http_client_socket(http_server) == EXPECTED


def test_netkeepalive_urllib3_configures_after_connecting_and_wins(http_server: Any) -> None:
    """netkeepalive.urllib3 configures each connection once it is connected: its values win.

    So do netkeepalive.requests.KeepAliveAdapter and
    netkeepalive.botocore.configure_client, which are built on it.
    """
    pytest.importorskip("urllib3")
    import netkeepalive.urllib3

    nk.install(**POLICY)
    with netkeepalive.urllib3.PoolManager(idle=99_000, probes=7) as manager:
        assert manager.request("GET", http_server.url, timeout=10).status == 200
        assert http_client_socket(http_server) == EXPECTED._replace(idle_s=99, probes=7)


def test_netkeepalive_aiohttp_socket_factory_is_replaced(http_server: Any) -> None:
    """The socket factory configures the socket before aiohttp connects it: the policy follows."""
    aiohttp = pytest.importorskip("aiohttp")
    import netkeepalive.aiohttp

    async def main() -> Kernel:
        factory = netkeepalive.aiohttp.socket_factory(idle=99_000, probes=7)
        connector = aiohttp.TCPConnector(socket_factory=factory)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(http_server.url) as response:
                assert await response.text() == "ok\n"
            return http_client_socket(http_server)

    nk.install(**POLICY)
    assert asyncio.run(main()) == EXPECTED


def test_after_uninstall_clients_are_untouched(http_server: Any) -> None:
    requests = pytest.importorskip("requests")
    nk.install(**POLICY)
    nk.uninstall()
    with requests.Session() as session:
        assert session.get(http_server.url, timeout=10).status_code == 200
        assert http_client_socket(http_server) == fresh_tcp()


def test_py_amqp_under_enforce_gets_the_policy_as_a_ceiling() -> None:
    """py-amqp's own 60/10/9 are clamped to the policy; its shorter user timeout stays."""
    amqp = pytest.importorskip("amqp")
    defaults = amqp.transport.DEFAULT_SOCKET_SETTINGS
    assert defaults["TCP_USER_TIMEOUT"] < POLICY["user_timeout"]
    before = nk.clamped_writes()
    with amqp_server() as server:
        nk.install(**POLICY, enforce=True)
        conn = amqp.Connection(host="{}:{}".format(*server.address), connect_timeout=10)
        conn.connect()
        try:
            sock = conn.transport.sock
            assert server.clients == [sock.getsockname()[:2]]
            seen = kernel_view.read(sock)
        finally:
            conn.close()
    assert seen == EXPECTED._replace(user_timeout_ms=defaults["TCP_USER_TIMEOUT"])
    after = nk.clamped_writes()
    assert {k: after[k] - before.get(k, 0) for k in ("idle", "interval", "probes")} == {
        "idle": 1,
        "interval": 1,
        "probes": 1,
    }

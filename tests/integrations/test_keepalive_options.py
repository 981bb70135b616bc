"""keepalive_options(): redis-py and py-amqp against minimal local servers.

The mapping is handed to the client library, which calls ``setsockopt``
itself; each test then reads the client's own socket back with
``sock.getsockopt`` (see kernel_view) and checks that the server saw that
very socket connect.
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from helpers import kernel_view
from helpers.kernel_view import Kernel
from helpers.wire_servers import amqp_server, resp_server

import netkeepalive
from netkeepalive import UnsupportedOptionError

pytestmark = kernel_view.linux_only


# -- the mapping ---------------------------------------------------------------


def test_mapping_in_the_kernels_units() -> None:
    options = netkeepalive.keepalive_options(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )
    assert options == {
        socket.TCP_KEEPIDLE: 10,
        socket.TCP_KEEPINTVL: 5,
        socket.TCP_KEEPCNT: 3,
        getattr(socket, "TCP_USER_TIMEOUT", 18): 30_000,
    }
    assert netkeepalive.keepalive_options(probes=4) == {socket.TCP_KEEPCNT: 4}
    assert netkeepalive.keepalive_options() == {}


def test_mapping_is_socket_options_without_so_keepalive() -> None:
    kwargs: dict[str, Any] = {"idle": 61_500, "interval": 2_000, "user_timeout": 5}
    tuples = netkeepalive.socket_options(**kwargs)
    assert tuples[0] == (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert netkeepalive.keepalive_options(**kwargs) == {
        option: value for _level, option, value in tuples[1:]
    }


def test_mapping_applied_by_hand_reaches_the_kernel(client: socket.socket) -> None:
    budget = netkeepalive.detect_within(20_000)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in netkeepalive.keepalive_options(**budget).items():
        client.setsockopt(socket.IPPROTO_TCP, option, value)
    # 20 s less the timer slack: 3 probes 2 s apart after 11 s idle, and a
    # user timeout of the same 17 s.
    assert kernel_view.read(client) == kernel_view.expected(budget) == Kernel(1, 11, 2, 3, 17_000)


def test_mapping_checks_like_socket_options() -> None:
    with pytest.raises(ValueError, match=r"probes: 0 is out of range; TCP_KEEPCNT takes 1 to 127"):
        netkeepalive.keepalive_options(probes=0)
    with pytest.raises(ValueError, match="TCP_KEEPIDLE"):
        netkeepalive.keepalive_options(idle=-1)
    with pytest.raises(TypeError, match="interval"):
        netkeepalive.keepalive_options(interval="5s")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        netkeepalive.keepalive_options(10_000)  # type: ignore[misc]


def test_mapping_on_macos_uses_its_option_numbers(simulate: Any) -> None:
    simulate("darwin", release="23.0.0")
    options = netkeepalive.keepalive_options(idle=7_000, probes=2)
    assert options == {0x10: 7, 0x102: 2}  # TCP_KEEPALIVE, TCP_KEEPCNT (netinet/tcp.h)


def test_mapping_refuses_what_a_list_cannot_carry_on_windows(simulate: Any) -> None:
    simulate("win32", build=15063)
    with pytest.raises(UnsupportedOptionError, match="idle"):
        netkeepalive.keepalive_options(idle=7_000)


def test_mapping_on_windows_from_build_16299(simulate: Any) -> None:
    simulate("win32", build=16299)
    # TCP_KEEPIDLE 3 and TCP_KEEPINTVL 17 in seconds, TCP_KEEPCNT 16, TCP_MAXRTMS 14 in ms.
    options = netkeepalive.keepalive_options(
        idle=60_000, interval=1_000, probes=5, user_timeout=20_000
    )
    assert options == {3: 60, 17: 1, 16: 5, 14: 20_000}
    with pytest.raises(ValueError, match=r"user_timeout: 0 ms .*TCP_MAXRTMS takes 1 to"):
        netkeepalive.keepalive_options(user_timeout=0)  # no "system default" there


def test_docs_example_output_is_what_linux_returns() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "integrations.rst"
    lines = page.read_text(encoding="utf-8").splitlines()
    call = next(i for i, line in enumerate(lines) if ">>> netkeepalive.keepalive_options(" in line)
    shown = lines[call + 1].strip()
    assert shown == repr(netkeepalive.keepalive_options(idle=10_000, interval=5_000, probes=3))


# -- redis-py ------------------------------------------------------------------


def _redis_socket(client: Any) -> socket.socket:
    """The socket of the one idle connection in a redis-py client's pool.

    ``connection_pool._available_connections`` holds the connections back
    in the pool after a command; a connected one keeps its socket in
    ``._sock``.
    """
    (conn,) = client.connection_pool._available_connections
    sock: socket.socket = conn._sock
    return sock


def test_redis_client_socket_holds_the_values(example: Callable[[str], ModuleType]) -> None:
    pytest.importorskip("redis")
    with resp_server() as server:
        host, port = server.address
        client = example("redis_client").make_client(host, port)
        try:
            assert client.ping() is True
            assert client.ping() is True
            sock = _redis_socket(client)
            assert server.clients == [sock.getsockname()[:2]]
            assert kernel_view.read(sock) == Kernel(1, 10, 5, 3, 30_000)
        finally:
            client.close()


def test_redis_with_detect_within() -> None:
    redis = pytest.importorskip("redis")
    budget = netkeepalive.detect_within(9_000)
    with resp_server() as server:
        host, port = server.address
        client = redis.Redis(
            host=host,
            port=port,
            socket_keepalive=True,
            socket_keepalive_options=netkeepalive.keepalive_options(**budget),
        )
        try:
            assert client.ping() is True
            sock = _redis_socket(client)
            assert server.clients == [sock.getsockname()[:2]]
            assert kernel_view.read(sock) == kernel_view.expected(budget)
        finally:
            client.close()


def test_redis_with_socket_keepalive_false_ignores_the_options() -> None:
    """redis-py applies the mapping only with socket_keepalive=True: the docs say so.

    (Its default is ``True`` since redis-py 8 and ``None``, off, before.)
    """
    redis = pytest.importorskip("redis")
    with resp_server() as server:
        host, port = server.address
        client = redis.Redis(
            host=host,
            port=port,
            socket_keepalive=False,
            socket_keepalive_options=netkeepalive.keepalive_options(probes=4),
        )
        try:
            assert client.ping() is True
            sock = _redis_socket(client)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) != 4
        finally:
            client.close()


# -- py-amqp -------------------------------------------------------------------


def test_amqp_connection_socket_holds_the_values(example: Callable[[str], ModuleType]) -> None:
    pytest.importorskip("amqp")
    with amqp_server() as server:
        host, port = server.address
        conn = example("amqp_connection").make_connection(host, port)
        conn.connect()  # the whole AMQP handshake, Connection.Open-Ok included
        try:
            assert conn.connected
            # The transport's socket, after py-amqp applied its socket_settings.
            sock = conn.transport.sock
            assert server.clients == [sock.getsockname()[:2]]
            assert kernel_view.read(sock) == Kernel(1, 10, 5, 3, 30_000)
        finally:
            conn.close()  # Connection.Close / Close-Ok
    assert not conn.connected


def test_amqp_default_user_timeout_is_one_second() -> None:
    """py-amqp sets TCP_USER_TIMEOUT=1000 ms unless socket_settings says otherwise."""
    amqp = pytest.importorskip("amqp")
    with amqp_server() as server:
        host, port = server.address
        conn = amqp.Connection(
            host=f"{host}:{port}",
            connect_timeout=10,
            socket_settings=netkeepalive.keepalive_options(idle=10_000, interval=5_000, probes=3),
        )
        conn.connect()
        try:
            sock = conn.transport.sock
            assert server.clients == [sock.getsockname()[:2]]
            assert kernel_view.read(sock) == Kernel(1, 10, 5, 3, 1_000)
        finally:
            conn.close()


def test_amqp_with_detect_within() -> None:
    amqp = pytest.importorskip("amqp")
    budget = netkeepalive.detect_within(60_000)
    with amqp_server() as server:
        host, port = server.address
        conn = amqp.Connection(
            host=f"{host}:{port}",
            connect_timeout=10,
            socket_settings=netkeepalive.keepalive_options(**budget),
        )
        conn.connect()
        try:
            sock = conn.transport.sock
            assert server.clients == [sock.getsockname()[:2]]
            assert kernel_view.read(sock) == kernel_view.expected(budget)
        finally:
            conn.close()


# -- the transport options shown for kombu and Celery ---------------------------------


def test_celery_redis_transport_options_reach_redis_py(
    example: Callable[[str], ModuleType],
) -> None:
    """kombu's Redis transport hands these options to redis-py as keyword arguments."""
    redis = pytest.importorskip("redis")
    options = example("redis_client").CELERY_CONFIG["broker_transport_options"]
    with resp_server() as server:
        host, port = server.address
        client = redis.Redis(host=host, port=port, **options)
        try:
            assert client.ping() is True
            sock = _redis_socket(client)
            assert server.clients == [sock.getsockname()[:2]]
            assert kernel_view.read(sock) == kernel_view.expected(
                netkeepalive.detect_within(60_000)
            )
        finally:
            client.close()


def test_celery_amqp_transport_options_reach_py_amqp(
    example: Callable[[str], ModuleType],
) -> None:
    """kombu's pyamqp transport hands these options to amqp.Connection as keyword arguments."""
    amqp = pytest.importorskip("amqp")
    options = example("amqp_connection").CELERY_CONFIG["broker_transport_options"]
    with amqp_server() as server:
        host, port = server.address
        conn = amqp.Connection(host=f"{host}:{port}", connect_timeout=10, **options)
        conn.connect()
        try:
            sock = conn.transport.sock
            assert server.clients == [sock.getsockname()[:2]]
            assert kernel_view.read(sock) == Kernel(1, 10, 5, 3, 30_000)
        finally:
            conn.close()

"""Servers: inheritance from the listening socket, socketserver, asyncio."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Callable

import pytest
from helpers.wire_servers import serving

import netkeepalive
import netkeepalive.aio
from netkeepalive import Settings, servers
from netkeepalive.servers import ServerKeepAlive

# Every value is read back with the standard library's getsockopt, in
# Linux's units, as an independent witness.
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="read back in Linux's units"
)
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="inheritance is verified on Linux only"
)


def kernel_settings(sock: Any) -> Settings:
    """*sock*'s keepalive settings read with ``getsockopt`` (a socket or a StreamWriter)."""
    if hasattr(sock, "get_extra_info"):
        sock = sock.get_extra_info("socket")
    tcp = socket.IPPROTO_TCP
    return Settings(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
        sock.getsockopt(tcp, socket.TCP_KEEPIDLE) * 1000,
        sock.getsockopt(tcp, socket.TCP_KEEPINTVL) * 1000,
        sock.getsockopt(tcp, socket.TCP_KEEPCNT),
        sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
    )


WANTED = Settings(True, 10_000, 5_000, 3, 30_000)
KWARGS = {"idle": 10_000, "interval": 5_000, "probes": 3, "user_timeout": 30_000}


def _defaults() -> Settings:
    with socket.socket() as fresh:
        return kernel_settings(fresh)


def _accept_from(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(listener.getsockname(), timeout=10)
    conn, _ = listener.accept()
    return client, conn


# -- inheritance, one option at a time ----------------------------------------

# For each knob: a value that differs from the kernel default, as configure()'s
# keyword argument, and the Settings field it reads back as.
INHERITANCE_CASES = {
    "enable": ({"enable": True}, "enabled", True),
    "idle": ({"enable": False, "idle": 11_000}, "idle", 11_000),
    "interval": ({"enable": False, "interval": 4_000}, "interval", 4_000),
    "probes": ({"enable": False, "probes": 6}, "probes", 6),
    "user_timeout": ({"enable": False, "user_timeout": 2_345}, "user_timeout", 2_345),
}


@linux_only
@pytest.mark.parametrize("knob", list(INHERITANCE_CASES))
def test_accepted_socket_inherits_option_from_listener(knob: str) -> None:
    kwargs, field, value = INHERITANCE_CASES[knob]
    default = getattr(_defaults(), field)
    assert default != value  # otherwise the test could not tell
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        netkeepalive.configure(listener, **kwargs)  # only this one option changed
        listener.listen()
        client, conn = _accept_from(listener)
        with client, conn:
            observed = getattr(kernel_settings(conn), field)
            client_side = getattr(kernel_settings(client), field)
    assert client_side == default  # the connecting side got nothing
    inherited = observed == value
    assert inherited == (knob in servers.INHERITED["linux"])
    assert inherited, f"{knob} was not inherited: {observed!r}"


@linux_only
def test_connection_completed_before_the_listener_is_configured_inherits_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        netkeepalive.configure(listener, **KWARGS)
        conn, _ = listener.accept()
        with client, conn:
            assert kernel_settings(conn) == _defaults()


def test_inherited_options_per_platform() -> None:
    assert servers.inherited_options("linux") == {
        "enable",
        "idle",
        "interval",
        "probes",
        "user_timeout",
    }
    assert servers.inherited_options("darwin") == frozenset()
    assert servers.inherited_options("win32") == frozenset()


# -- ServerKeepAlive with socket.create_server ---------------------------------


@pytest.fixture(params=["inherit", "per-connection"])
def inheritance(request: pytest.FixtureRequest, claim_inheritance: Any) -> str:
    """Run on both paths: relying on inheritance, and configuring each connection."""
    if request.param == "per-connection":
        claim_inheritance(frozenset())
    elif not sys.platform.startswith("linux"):
        pytest.skip("inheritance is verified on Linux only")
    return str(request.param)


@pytest.mark.parametrize("make", ["make_listener", "make_listener_with_create_server"])
def test_stdlib_example_listener_and_accepted(
    inheritance: str, example: Callable[[str], ModuleType], make: str
) -> None:
    stdlib = example("stdlib_sockets")
    with getattr(stdlib, make)() as listener:
        assert kernel_settings(listener) == WANTED
        client = stdlib.connect(listener.getsockname())
        with client, stdlib.accept_one(listener) as conn:
            assert kernel_settings(conn) == WANTED
            assert kernel_settings(client) == WANTED
            assert conn.getpeername() == client.getsockname()


def test_connection_queued_before_a_late_listener_configuration_is_configured(
    inheritance: str,
) -> None:
    keepalive = ServerKeepAlive(**KWARGS)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        keepalive.configure_listener(listener)  # already listening, client queued
        conn, _ = listener.accept()
        with client, conn:
            keepalive.configure_accepted(conn)
            assert kernel_settings(conn) == WANTED


@linux_only
def test_on_linux_configure_accepted_relies_on_inheritance(listener: socket.socket) -> None:
    keepalive = ServerKeepAlive(**KWARGS)
    with socket.socket() as early:
        early.bind(("127.0.0.1", 0))
        keepalive.configure_listener(early)  # before listen(): inheritance is relied on
    # A connection from a listener that was *not* configured shows that
    # configure_accepted() made no setsockopt call of its own.
    client, conn = _accept_from(listener)
    with client, conn:
        keepalive.configure_accepted(conn)
        assert kernel_settings(conn) == _defaults()


def test_configure_accepted_before_configure_listener_sets_everything(
    listener: socket.socket,
) -> None:
    keepalive = ServerKeepAlive(**KWARGS)
    client, conn = _accept_from(listener)  # listener left at the defaults
    with client, conn:
        keepalive.configure_accepted(conn)
        assert kernel_settings(conn) == WANTED
        assert kernel_settings(listener) == _defaults()


def test_server_keepalive_checks_values_up_front() -> None:
    with pytest.raises(ValueError, match="TCP_KEEPCNT"):
        ServerKeepAlive(probes=1_000_000)
    with pytest.raises(TypeError, match="interval"):
        ServerKeepAlive(interval=[5])  # type: ignore[arg-type]
    assert repr(ServerKeepAlive(idle=1_000)) == "ServerKeepAlive(idle=1000)"


# -- socketserver ------------------------------------------------------------


@pytest.fixture
def tcp_server(
    inheritance: str, example: Callable[[str], ModuleType]
) -> Iterator[tuple[Any, threading.Thread]]:
    stdlib = example("stdlib_sockets")
    server = stdlib.KeepAliveTCPServer(("127.0.0.1", 0), stdlib.SettingsHandler)
    with serving(server) as thread:
        yield server, thread


def test_socketserver_mixin_configures_listener_and_connections(
    tcp_server: tuple[Any, threading.Thread],
) -> None:
    server, _ = tcp_server
    expected = Settings(True, 10_000, 5_000, 3, _defaults().user_timeout)
    assert kernel_settings(server.socket) == expected
    for _ in range(2):
        with socket.create_connection(server.server_address, timeout=10) as client:
            line = client.makefile("rb").readline().decode()
        # The handler reported its accepted socket's settings, read with getsockopt.
        assert line == f"{expected}\n"


# -- asyncio -----------------------------------------------------------------


def test_asyncio_example_server_and_client(
    inheritance: str, example: Callable[[str], ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    streams = example("asyncio_streams")
    asyncio.run(streams.main())
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"server side: {WANTED}"
    client = Settings(True, 10_000, 5_000, 3, _defaults().user_timeout)
    assert out[1] == f"client side: {client} b'hello\\n'"


def test_aio_start_server_configures_before_serving(inheritance: str) -> None:
    async def scenario() -> tuple[list[Settings], Settings, list[Settings]]:
        seen: asyncio.Queue[Settings] = asyncio.Queue()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await seen.put(kernel_settings(writer))
            writer.close()

        server = await netkeepalive.aio.start_server(
            on_connect, "127.0.0.1", 0, backlog=8, **KWARGS
        )
        async with server:
            listeners = [kernel_settings(s) for s in server.sockets]
            host, port = server.sockets[0].getsockname()[:2]
            reader, writer = await netkeepalive.aio.open_connection(
                host, port, idle=2_000, probes=2
            )
            client = kernel_settings(writer)
            accepted = [await asyncio.wait_for(seen.get(), 10)]
            await reader.read()
            writer.close()
            await writer.wait_closed()
        return listeners, client, accepted

    listeners, client, accepted = asyncio.run(scenario())
    assert listeners == [WANTED]
    assert accepted == [WANTED]
    assert (client.enabled, client.idle, client.probes) == (True, 2_000, 2)


def test_aio_start_server_can_leave_serving_to_the_caller() -> None:
    async def scenario() -> tuple[bool, bool, Settings]:
        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await netkeepalive.aio.start_server(
            on_connect, "127.0.0.1", 0, start_serving=False, probes=4
        )
        async with server:
            before = server.is_serving()
            await server.start_serving()
            return before, server.is_serving(), kernel_settings(server.sockets[0])

    before, after, settings = asyncio.run(scenario())
    assert (before, after) == (False, True)
    assert (settings.enabled, settings.probes) == (True, 4)


def test_aio_start_server_closes_a_connection_it_cannot_configure(
    refuse_option: Any, claim_inheritance: Any
) -> None:
    import errno

    armed: list[bool] = []  # refuse only once the listener is configured
    refuse_option(
        socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, errno.EPERM, when=lambda fd: bool(armed)
    )
    claim_inheritance(frozenset())  # every connection configured on its own
    called: list[bool] = []
    reported: list[Any] = []

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: reported.append(context.get("exception")))
        server = await netkeepalive.aio.start_server(
            lambda r, w: called.append(True), "127.0.0.1", 0, user_timeout=1_000
        )
        armed.append(True)
        async with server:
            host, port = server.sockets[0].getsockname()[:2]
            reader, writer = await asyncio.open_connection(host, port)
            try:
                return await asyncio.wait_for(reader.read(1), 5)  # b"": closed
            finally:
                writer.close()

    assert asyncio.run(scenario()) == b""
    assert called == []
    assert [str(e) for e in reported] == [
        "configure: setsockopt(TCP_USER_TIMEOUT): [Errno 1] Operation not permitted; "
        "nothing was changed"
    ]


def test_aio_start_server_checks_values_before_binding() -> None:
    async def scenario() -> None:
        await netkeepalive.aio.start_server(lambda r, w: None, "127.0.0.1", 0, idle=-5)

    with pytest.raises(ValueError, match="TCP_KEEPIDLE"):
        asyncio.run(scenario())


def test_aio_open_connection_checks_values_before_connecting() -> None:
    # A bound socket that does not listen: connecting to it would be refused.
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        host, port = closed_port.getsockname()
        with pytest.raises(ValueError, match="TCP_KEEPCNT"):
            asyncio.run(netkeepalive.aio.open_connection(host, port, probes=0))
        with pytest.raises(ConnectionRefusedError):
            asyncio.run(netkeepalive.aio.open_connection(host, port, probes=1))


def test_aio_open_connection_closes_the_connection_on_a_refusal(
    listener: socket.socket, refuse_option: Any
) -> None:
    import errno

    refuse_option(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, errno.EPERM)  # injected
    host, port = listener.getsockname()
    with pytest.raises(netkeepalive.SocketOptionError) as info:
        asyncio.run(netkeepalive.aio.open_connection(host, port, user_timeout=1_000))
    assert str(info.value) == (
        "configure: setsockopt(TCP_USER_TIMEOUT): [Errno 1] Operation not permitted; "
        "nothing was changed"
    )
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(10)
        assert conn.recv(1) == b""  # the client side was closed

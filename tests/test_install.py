"""install(): every TCP socket of the process gets the policy, read back from the kernel.

Each test makes real loopback connections after :func:`netkeepalive.install`
and reads the options of the client's own socket (and the listener's and
the accepted one's) with the standard library's ``getsockopt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Callable, FrozenSet, List, Tuple

import pytest

import netkeepalive as nk
from netkeepalive import _install

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

TCP = socket.IPPROTO_TCP
#: install() keyword arguments and what the kernel then reports for them:
#: (SO_KEEPALIVE, TCP_KEEPIDLE s, TCP_KEEPINTVL s, TCP_KEEPCNT, TCP_USER_TIMEOUT ms).
POLICY = {"idle": 11_000, "interval": 3_000, "probes": 4, "user_timeout": 23_456}
EXPECTED = (1, 11, 3, 4, 23_456)
OTHER = {"idle": 17_000, "interval": 2_000, "probes": 6, "user_timeout": 9_000}
OTHER_EXPECTED = (1, 17, 2, 6, 9_000)

Kernel = Tuple[int, int, int, int, int]


def kernel(sock: Any) -> Kernel:
    """The five options as the kernel reports them to the standard library."""
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
    )


def fresh_tcp() -> Kernel:
    """What a new TCP socket reports on this system (never touched by install)."""
    with socket.socket() as sock:
        return kernel(sock)


METHODS = ("connect", "connect_ex", "listen", "accept")


def class_attributes() -> dict[str, Any]:
    """socket.socket's own attributes for the patched names (absent: a marker)."""
    return {name: socket.socket.__dict__.get(name, "absent") for name in METHODS}


ORIGINAL = class_attributes()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    """No policy before or after each test, and the once-per-process warnings forgotten."""
    before = class_attributes()
    nk.uninstall()
    _install._warned.clear()
    yield
    nk.uninstall()
    _install._warned.clear()
    assert class_attributes() == before


# -- what gets configured ----------------------------------------------------


def test_create_connection_gets_the_policy(listener: socket.socket) -> None:
    default = fresh_tcp()
    assert default != EXPECTED
    nk.install(**POLICY)
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client) == EXPECTED
        server, _ = listener.accept()  # the listener predates install(): untouched
        with server:
            assert kernel(server) == default


def test_policy_is_applied_before_the_connection_is_made(listener: socket.socket) -> None:
    """The socket is not connected yet when the policy runs; a non-blocking connect still works."""
    peers: List[int] = []

    def where(sock: socket.socket, address: Any) -> bool:
        try:
            sock.getpeername()
        except OSError as exc:
            peers.append(exc.errno)  # ENOTCONN: connect() has not been called yet
        return True

    nk.install(**POLICY, where=where)
    client = socket.socket()
    client.setblocking(False)
    with client:
        assert client.connect_ex(listener.getsockname()) in (0, errno.EINPROGRESS)
        assert peers == [errno.ENOTCONN]
        assert kernel(client) == EXPECTED
        server, _ = listener.accept()
        server.close()
        client.setblocking(True)
        assert client.getpeername() == listener.getsockname()


def test_connect_and_connect_ex_on_plain_sockets(listener: socket.socket) -> None:
    nk.install(**POLICY)
    for family_kwargs in ({}, {"family": socket.AF_INET, "type": socket.SOCK_STREAM}):
        with socket.socket(**family_kwargs) as a, socket.socket(**family_kwargs) as b:
            a.connect(listener.getsockname())
            assert b.connect_ex(listener.getsockname()) == 0
            assert kernel(a) == EXPECTED
            assert kernel(b) == EXPECTED
            for _ in range(2):
                listener.accept()[0].close()


def test_ssl_socket_subclass(listener: socket.socket) -> None:
    """ssl.SSLSocket connects through socket.socket.connect: covered (no handshake needed here)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    nk.install(**POLICY)
    with context.wrap_socket(socket.socket(), do_handshake_on_connect=False) as client:
        assert isinstance(client, ssl.SSLSocket)
        client.connect(listener.getsockname())
        assert kernel(client) == EXPECTED
        listener.accept()[0].close()


def test_ipv6_connection() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with listener:
        nk.install(**POLICY)
        with socket.create_connection(listener.getsockname()[:2]) as client:
            assert client.family == socket.AF_INET6
            assert kernel(client) == EXPECTED


def test_listener_configured_and_accepted_connection_inherits() -> None:
    nk.install(**POLICY)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        assert kernel(listener) == EXPECTED
        nk.uninstall()  # the client end stays untouched: only inheritance is at work
        with socket.create_connection(listener.getsockname()) as client:
            server, _ = listener.accept()
            with server:
                assert kernel(server) == EXPECTED
                assert kernel(client) == fresh_tcp()


def test_socketserver_listener_and_its_connections() -> None:
    import socketserver

    seen: List[Kernel] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            seen.append(kernel(self.request))

    nk.install(**POLICY)
    with socketserver.TCPServer(("127.0.0.1", 0), Handler) as server:
        assert kernel(server.socket) == EXPECTED
        nk.uninstall()  # the connection's server end gets the policy by inheritance
        with socket.create_connection(server.server_address) as client:
            server.handle_request()
            assert kernel(client) == fresh_tcp()
    assert seen == [EXPECTED]


def test_server_helpers_configure_before_listen_so_the_policy_follows() -> None:
    """KeepAliveMixin and aio.start_server set the listener before it listens: replaced.

    On Linux their accepted connections inherit the listener's, which is
    then the policy (they configure accepted sockets only where nothing is
    inherited).
    """
    import socketserver

    from netkeepalive import aio
    from netkeepalive.servers import KeepAliveMixin, ServerKeepAlive

    seen: List[Kernel] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            seen.append(kernel(self.request))

    class Server(KeepAliveMixin, socketserver.TCPServer):
        keepalive = ServerKeepAlive(**OTHER)

    async def asyncio_server() -> Tuple[Kernel, Kernel]:
        accepted: List[Kernel] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(kernel(writer.get_extra_info("socket")))
            writer.close()

        server = await aio.start_server(handle, "127.0.0.1", 0, **OTHER)
        async with server:
            listening = kernel(server.sockets[0])
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            await reader.read()
            writer.close()
            await writer.wait_closed()
        return listening, accepted[0]

    nk.install(**POLICY)
    with Server(("127.0.0.1", 0), Handler) as server:
        assert kernel(server.socket) == EXPECTED
        with socket.create_connection(server.server_address):
            server.handle_request()
    assert seen == [EXPECTED]
    assert asyncio.run(asyncio_server()) == (EXPECTED, EXPECTED)
    nk.uninstall()  # without a policy, their own settings
    with Server(("127.0.0.1", 0), Handler) as server:
        assert kernel(server.socket) == OTHER_EXPECTED


def test_enable_false_turns_keepalive_off(listener: socket.socket) -> None:
    nk.install(enable=False, idle=5_000)
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client)[:2] == (0, 5)


def test_only_so_keepalive_by_default(listener: socket.socket) -> None:
    default = fresh_tcp()
    nk.install()
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client) == (1, *default[1:])


def test_detect_within_plugs_in(listener: socket.socket) -> None:
    params = nk.detect_within(30_000)
    nk.install(**params)
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client) == (
            1,
            params["idle"] // 1000,  # type: ignore[operator]
            params["interval"] // 1000,  # type: ignore[operator]
            params["probes"],
            params["user_timeout"],
        )
        assert nk.get_settings(client).detection_time <= 30_000  # type: ignore[operator]


def test_values_are_converted_once(listener: socket.socket) -> None:
    policy = nk.install(idle=timedelta(seconds=12.5), interval=2_999.9, probes=5)
    # Linux takes whole seconds: what the kernel will get, in ms.
    assert (policy.idle, policy.interval, policy.probes, policy.user_timeout) == (
        12_000,
        2_000,
        5,
        None,
    )
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client)[:4] == (1, 12, 2, 5)


# -- asyncio -----------------------------------------------------------------


def test_asyncio_open_connection_and_start_server() -> None:
    async def main() -> Tuple[Kernel, Kernel, Kernel]:
        accepted: List[Kernel] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(kernel(writer.get_extra_info("socket")))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            host, port = server.sockets[0].getsockname()[:2]
            listening = kernel(server.sockets[0])
            reader, writer = await asyncio.open_connection(host, port)
            client = kernel(writer.get_extra_info("socket"))
            await reader.read()  # the handler has run and closed its end
            writer.close()
            await writer.wait_closed()
        return listening, client, accepted[0]

    nk.install(**POLICY)
    assert asyncio.run(main()) == (EXPECTED, EXPECTED, EXPECTED)


def test_asyncio_sock_connect_and_create_connection(listener: socket.socket) -> None:
    address = listener.getsockname()

    async def main() -> Tuple[Kernel, Kernel]:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        with sock:
            await loop.sock_connect(sock, address)
            by_sock_connect = kernel(sock)
        transport, _ = await loop.create_connection(asyncio.Protocol, *address)
        by_create_connection = kernel(transport.get_extra_info("socket"))
        transport.close()
        return by_sock_connect, by_create_connection

    nk.install(**POLICY)
    assert asyncio.run(main()) == (EXPECTED, EXPECTED)


# -- what is left alone ------------------------------------------------------


def test_udp_and_unix_sockets_untouched(tmp_path: Any) -> None:
    nk.install(**POLICY)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.connect(receiver.getsockname())
            assert udp.connect_ex(receiver.getsockname()) == 0
            assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix_listener:
        unix_listener.bind(path)
        unix_listener.listen()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
            unix.connect(path)
            for sock in (unix_listener, unix):
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


@pytest.mark.parametrize(("name", "number"), [("SCTP", 132), ("MPTCP", 262)])
def test_other_stream_protocols_untouched(name: str, number: int) -> None:
    """SCTP and MPTCP streams share SOCK_STREAM: the protocol number keeps them out."""
    nk.install(**POLICY)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, number)
    except OSError as exc:
        pytest.skip(f"no {name} here: {exc}")
    with sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_raw_sockets_untouched() -> None:
    nk.install(**POLICY)
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW")
    with raw:
        raw.connect(("127.0.0.1", 9))  # sets the peer address; nothing is sent
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_closed_socket_still_raises_its_own_error(listener: socket.socket) -> None:
    nk.install(**POLICY)
    sock = socket.socket()
    sock.close()
    with pytest.raises(OSError) as info:
        sock.connect(listener.getsockname())
    assert info.value.errno == errno.EBADF
    assert not isinstance(info.value, nk.SocketOptionError)


def test_uninstall_restores_the_methods_exactly(listener: socket.socket) -> None:
    originals = {name: getattr(socket.socket, name) for name in METHODS}
    own = class_attributes()
    first = nk.install(**POLICY)
    assert socket.socket.connect is not originals["connect"]
    assert nk.installed() is first
    assert nk.uninstall() == first
    assert nk.installed() is None
    assert class_attributes() == own
    for name in METHODS:
        assert getattr(socket.socket, name) is originals[name]
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client) == fresh_tcp()
    assert nk.uninstall() is None  # twice: nothing to do


def test_uninstall_leaves_a_later_patch_in_place(listener: socket.socket) -> None:
    nk.install(**POLICY)
    ours = socket.socket.connect
    calls: List[Any] = []

    def theirs(self: socket.socket, address: Any) -> None:
        calls.append(address)
        ours(self, address)

    socket.socket.connect = theirs  # type: ignore[method-assign]
    try:
        nk.uninstall()
        assert socket.socket.connect is theirs
        with socket.create_connection(listener.getsockname()) as client:
            assert kernel(client) == fresh_tcp()  # our wrapper below it does nothing
        assert calls == [listener.getsockname()]
    finally:
        del socket.socket.connect


def test_second_install_replaces(listener: socket.socket) -> None:
    nk.install(**POLICY, where=lambda sock, address: True)
    patched = socket.socket.connect
    second = nk.install(**OTHER)
    assert nk.installed() is second
    assert second.where is None
    assert socket.socket.connect is patched  # patched once, policy swapped
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client) == OTHER_EXPECTED


def test_where_filters_on_socket_and_address() -> None:
    chosen = socket.create_server(("127.0.0.1", 0))
    other = socket.create_server(("127.0.0.1", 0))
    with chosen, other:
        port = chosen.getsockname()[1]
        seen: List[Tuple[Any, Any]] = []

        def where(sock: socket.socket, address: Any) -> bool:
            seen.append((sock, address))
            return bool(address[1] == port)

        nk.install(**POLICY, where=where)
        a = socket.create_connection(chosen.getsockname())
        b = socket.create_connection(other.getsockname())
        with a, b:
            assert kernel(a) == EXPECTED
            assert kernel(b) == fresh_tcp()
            assert [address for _, address in seen] == [chosen.getsockname(), other.getsockname()]
            assert [sock for sock, _ in seen] == [a, b]
    # listen: where gets the local address the socket is bound to
    seen.clear()
    with socket.socket() as late:
        late.bind(("127.0.0.1", 0))
        late.listen()
        assert seen == [(late, late.getsockname())]
        assert kernel(late) == fresh_tcp()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"idle": 500}, ValueError),  # under one second on Linux
        ({"interval": -1}, ValueError),
        ({"probes": 0}, ValueError),
        ({"probes": 1000}, ValueError),
        ({"user_timeout": 2**31}, ValueError),
        ({"idle": "10s"}, TypeError),
        ({"probes": 3.0}, TypeError),
        ({"enable": 1}, TypeError),
        ({"only_lower": "yes"}, TypeError),
        ({"where": 5432}, TypeError),
    ],
)
def test_bad_values_raise_at_install(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error) as info:
        nk.install(**kwargs)
    assert str(next(iter(kwargs))) in str(info.value)
    assert nk.installed() is None
    assert class_attributes() == ORIGINAL


def test_bad_value_keeps_the_previous_policy(listener: socket.socket) -> None:
    first = nk.install(**POLICY)
    with pytest.raises(ValueError, match="TCP_KEEPCNT"):
        nk.install(probes=500)
    assert nk.installed() is first
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client) == EXPECTED


# -- warnings: never a broken connection ---------------------------------------


def test_kernel_refusal_warns_once_and_connects(
    listener: socket.socket, refuse_option: Callable[..., None]
) -> None:
    refuse_option(TCP, socket.TCP_USER_TIMEOUT, errno.EPERM)  # injected: Linux accepts it
    nk.install(**POLICY)
    with pytest.warns(nk.KeepaliveWarning, match=r"setsockopt\(TCP_USER_TIMEOUT\)") as record:
        first = socket.create_connection(listener.getsockname())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second refusal is not reported again
        second = socket.create_connection(listener.getsockname())
    assert len(record) == 1
    assert "Operation not permitted" in str(record[0].message)
    assert "not applied to that socket" in str(record[0].message)
    default = fresh_tcp()
    for client in (first, second):
        with client:
            assert client.getpeername() == listener.getsockname()
            # All or nothing: no other option was tried on its own.
            assert kernel(client) == default
    # Warnings turned into errors (python -W error) are raised, as asked.
    _install._warned.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sock = socket.socket()
        with sock, pytest.raises(nk.KeepaliveWarning):
            sock.connect(listener.getsockname())


def test_unsupported_option_warns_once_and_connects(simulate: Callable[..., Any]) -> None:
    """NetBSD has no user timeout: the other options still apply."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sim = simulate("netbsd10", release="10.0", version="NetBSD 10.0 (GENERIC)")
        with pytest.warns(nk.KeepaliveWarning, match="user_timeout: not supported on netbsd"):
            policy = nk.install(**POLICY)
        assert policy.skipped == ("user_timeout",)
        assert policy.user_timeout is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process, even for a new install()
            nk.install(**POLICY)
            client = socket.create_connection(listener.getsockname())
        with client:
            fd = client.fileno()
            tcp = 6
            # NetBSD's TCP_KEEPIDLE 3, TCP_KEEPINTVL 5, TCP_KEEPCNT 6; the
            # times in 500 ms ticks.
            assert {k: v for k, v in sim.kernel.values.items() if k[0] == fd} == {
                (fd, 0xFFFF, 8): 1,
                (fd, tcp, 3): 22,
                (fd, tcp, 5): 6,
                (fd, tcp, 6): 4,
            }
            # NetBSD's accepted sockets are not known to inherit: accept() configures.
            nk.uninstall()
            nk.install(**POLICY)
            with socket.create_server(("127.0.0.1", 0)) as server:
                assert socket.socket.accept is _install._accept
                with socket.create_connection(server.getsockname()):
                    conn, _ = server.accept()
                    with conn:
                        assert sim.kernel.values[conn.fileno(), tcp, 3] == 22
                        assert sim.kernel.values[conn.fileno(), 0xFFFF, 8] == 1


def test_only_lower_skips_what_cannot_be_read_back(simulate: Callable[..., Any]) -> None:
    """NetBSD before 8 cannot report its keepalive times: only_lower leaves them out.

    SO_KEEPALIVE is still turned on, and nothing is reported at connect time.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sim = simulate("netbsd7", release="7.2", version="NetBSD 7.2 (GENERIC)")
        with pytest.warns(nk.KeepaliveWarning) as record:
            policy = nk.install(idle=11_000, probes=4, only_lower=True)
        assert policy.skipped == ("idle", "probes")
        assert (policy.idle, policy.probes) == (None, None)
        assert sorted(str(w.message).split(":")[1].strip() for w in record) == ["idle", "probes"]
        assert all("cannot be read back" in str(w.message) for w in record)
        with pytest.raises(ValueError, match="TCP_KEEPCNT"):
            nk.install(probes=0, only_lower=True)  # still checked
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing more to report at connect time
            client = socket.create_connection(listener.getsockname())
        with client:
            fd = client.fileno()
            assert {k: v for k, v in sim.kernel.values.items() if k[0] == fd} == {
                (fd, 0xFFFF, 8): 1  # SO_KEEPALIVE
            }


def test_accept_configures_where_there_is_no_inheritance(
    claim_inheritance: Callable[[FrozenSet[str]], None],
) -> None:
    """Linux, told it does not inherit: accept() must set the options itself."""
    claim_inheritance(frozenset())
    nk.install(**POLICY)
    assert socket.socket.accept is _install._accept
    with socket.create_server(("127.0.0.1", 0)) as listener:
        # Different values on the listener after listen(): the accepted socket
        # inherits these, and only accept() can bring it back to the policy.
        listener.setsockopt(TCP, socket.TCP_KEEPIDLE, 99)
        with socket.create_connection(listener.getsockname()):
            conn, _ = listener.accept()
            with conn:
                assert kernel(conn) == EXPECTED
        with socket.socket() as unconfigured:  # listened before install(): left alone
            nk.uninstall()
            unconfigured.bind(("127.0.0.1", 0))
            unconfigured.listen()
            nk.install(**POLICY)
            unconfigured.setsockopt(TCP, socket.TCP_KEEPIDLE, 99)
            with socket.create_connection(unconfigured.getsockname()):
                conn, _ = unconfigured.accept()
                with conn:
                    assert kernel(conn)[1] == 99


def test_no_accept_wrapper_where_connections_inherit() -> None:
    nk.install(**POLICY)
    assert "accept" not in socket.socket.__dict__ or socket.socket.accept is not _install._accept


# -- threads -----------------------------------------------------------------


def test_concurrent_connects_see_one_whole_policy(listener: socket.socket) -> None:
    """Connects racing install()/uninstall() get all of one policy, or nothing."""
    listener.listen(512)
    address = listener.getsockname()
    default = fresh_tcp()
    results: List[Kernel] = []
    errors: List[BaseException] = []
    stop = threading.Event()

    def connector() -> None:
        try:
            for _ in range(25):
                with socket.create_connection(address) as sock:
                    results.append(kernel(sock))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def acceptor() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(socket.timeout):
                listener.accept()[0].close()

    def switcher() -> None:
        while not stop.is_set():
            nk.install(**POLICY)
            nk.install(**OTHER)
            nk.uninstall()

    background = [threading.Thread(target=acceptor), threading.Thread(target=switcher)]
    connectors = [threading.Thread(target=connector) for _ in range(6)]
    for thread in background + connectors:
        thread.start()
    for thread in connectors:
        thread.join(60)
    stop.set()
    for thread in background:
        thread.join(60)
    assert not errors
    assert len(results) == 150
    assert set(results) <= {EXPECTED, OTHER_EXPECTED, default}


def test_concurrent_installs_patch_once() -> None:
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        nk.install(**POLICY)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert socket.socket.connect is _install._connect
    assert _install._real_connect is socket.socket.__mro__[1].connect  # not our own wrapper
    nk.uninstall()
    assert "connect" not in socket.socket.__dict__


# -- only_lower --------------------------------------------------------------


def test_only_lower(listener: socket.socket) -> None:
    """Each value only where the socket's is higher: the defaults are lowered, not raised."""
    default = fresh_tcp()
    # Lower than the default idle (7200 s here), higher than the default probes.
    assert default[1] > 11
    assert default[3] < 40
    nk.install(idle=11_000, probes=40, only_lower=True)
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client)[1] == 11
        assert kernel(client)[3] == default[3]


def test_only_lower_both_ways_on_values_set_before_the_connect(listener: socket.socket) -> None:
    """What a program or library set before connecting stays where it is lower, per option.

    Without ``only_lower`` the policy replaces it (see also the redis-py case
    in tests/integrations/test_install_clients.py).
    """
    presets = {
        # each option on one socket lower than the policy, on the other higher
        "a": (5, 60, 2, 60_000),
        "b": (99, 1, 20, 1_000),
    }
    expected = {"a": (1, 5, 3, 2, 23_456), "b": (1, 11, 1, 4, 1_000)}
    options = (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)

    def connect(preset: Tuple[int, int, int, int]) -> Kernel:
        with socket.socket() as sock:
            for option, value in zip((*options, socket.TCP_USER_TIMEOUT), preset):
                sock.setsockopt(TCP, option, value)
            sock.connect(listener.getsockname())
            listener.accept()[0].close()
            return kernel(sock)

    nk.install(**POLICY, only_lower=True)
    assert {name: connect(preset) for name, preset in presets.items()} == expected
    nk.install(**POLICY)
    assert {name: connect(preset) for name, preset in presets.items()} == {
        "a": EXPECTED,
        "b": EXPECTED,
    }


ONLY_LOWER_CHILD = r"""
import json, os, socket, sys
import netkeepalive as nk

os.system("ip link set lo up")
for name, value in (("tcp_keepalive_time", 5), ("tcp_keepalive_probes", 20)):
    with open("/proc/sys/net/ipv4/" + name, "w") as f:
        f.write(str(value))
tcp = socket.IPPROTO_TCP
seen = []
with socket.create_server(("127.0.0.1", 0)) as listener:
    for only_lower in (True, False):
        nk.install(idle=11_000, interval=3_000, probes=4, only_lower=only_lower)
        with socket.create_connection(listener.getsockname()) as client:
            seen.append([client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)] + [
                client.getsockopt(tcp, o)
                for o in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)
            ])
            listener.accept()[0].close()
print(json.dumps(seen))
"""


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace with its own sysctls: root")
@pytest.mark.skipif(
    shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs unshare (util-linux) and ip (iproute2)",
)
def test_only_lower_keeps_what_an_administrator_lowered() -> None:
    """In a namespace whose tcp_keepalive_time is 5 s and probes 20: 5 s stays, 20 is lowered."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    before = fresh_tcp()
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", ONLY_LOWER_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[1, 5, 3, 4], [1, 11, 3, 4]]
    assert fresh_tcp() == before  # this namespace's sysctls are untouched


def test_only_lower_is_part_of_the_policy() -> None:
    policy = nk.install(idle=11_000, only_lower=True)
    assert policy.only_lower is True
    assert nk.installed() == policy


def test_import_does_not_load_install() -> None:
    import subprocess

    code = "import netkeepalive, sys; print('netkeepalive._install' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "False"


def _exit_status(pid: int) -> int:
    """The child's exit status; killed and a failure after 30 s."""
    import time

    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status)
            return os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child hung")
        time.sleep(0.05)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_keeps_the_policy(listener: socket.socket) -> None:
    address = listener.getsockname()
    nk.install(**POLICY)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:
            with socket.create_connection(address) as client:
                status = 0 if kernel(client) == EXPECTED else 3
        finally:
            os._exit(status)
    assert _exit_status(pid) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_can_install_while_the_parent_holds_the_lock(
    listener: socket.socket,
) -> None:
    """A fork while another thread is inside install() must not leave the child stuck."""
    address = listener.getsockname()
    with _install._lock:  # as if another thread were inside install() at the fork
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            status = 1
            try:
                nk.install(**POLICY)
                with socket.create_connection(address) as client:
                    status = 0 if kernel(client) == EXPECTED else 3
            finally:
                os._exit(status)
    assert _exit_status(pid) == 0

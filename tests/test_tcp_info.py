"""get_tcp_info: TCP_INFO read back from real loopback connections."""

from __future__ import annotations

import dataclasses
import errno
import socket
import sys
import time
from typing import Callable

import pytest
from pytest_mock import MockerFixture

import netkeepalive
import netkeepalive._backends
from netkeepalive import tcp_info
from netkeepalive._backends.unix import UnixBackend
from netkeepalive.constants import DARWIN, FREEBSD, PlatformTable

#: Reading struct tcp_info from a real socket: Linux's layout.
linux_tcp_info = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="TCP_INFO as Linux lays it out"
)


def _wait_for(predicate: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {limit} s waiting for {what}")
        time.sleep(0.01)


@linux_tcp_info
def test_state_and_probes_reads_the_head_of_the_same_structure(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    for end in (client, server):
        info = netkeepalive.get_tcp_info(end)
        assert tcp_info.state_and_probes(end.fileno()) == (info.state, info.probes)
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        state, probes = tcp_info.state_and_probes(listener.fileno())
        assert (tcp_info.TCP_STATES[state], probes) == ("LISTEN", 0)
    with socket.socket() as fresh:
        assert tcp_info.TCP_STATES[tcp_info.state_and_probes(fresh.fileno())[0]] == "CLOSE"


@linux_tcp_info
def test_state_and_probes_on_a_closed_descriptor_names_the_call() -> None:
    sock = socket.socket()
    fd = sock.detach()
    socket.close(fd)
    with pytest.raises(netkeepalive.SocketOptionError, match=r"getsockopt.*TCP_INFO") as info:
        tcp_info.state_and_probes(fd)
    assert info.value.errno == errno.EBADF


@linux_tcp_info
def test_established_connection(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    for end in (client, server):
        info = netkeepalive.get_tcp_info(end)
        assert tcp_info.TCP_STATES[info.state] == "ESTABLISHED"
        assert info.state_name == "ESTABLISHED"
        assert info.length >= tcp_info.BASE_SIZE
        assert info.probes == 0
        assert info.retransmits == 0
        assert info.backoff == 0
        assert info.unacked == 0
        # The handshake gave an RTT sample and a retransmission timeout of at
        # least the kernel's 200 ms floor, reported in microseconds.
        assert info.rto >= 200_000
        assert info.rtt > 0


@linux_tcp_info
def test_listener_and_closed_states(listener: socket.socket) -> None:
    assert netkeepalive.get_tcp_info(listener).state_name == "LISTEN"
    fresh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with fresh:
        assert netkeepalive.get_tcp_info(fresh).state_name == "CLOSE"


@linux_tcp_info
def test_peer_close_is_seen(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    server.shutdown(socket.SHUT_WR)
    _wait_for(lambda: netkeepalive.get_tcp_info(client).state_name == "CLOSE_WAIT", "CLOSE_WAIT")
    _wait_for(lambda: netkeepalive.get_tcp_info(server).state_name == "FIN_WAIT2", "FIN_WAIT2")


@linux_tcp_info
def test_counts_follow_the_data(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    payload = b"k" * 5000
    before = netkeepalive.get_tcp_info(client)
    client.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = server.recv(65536)
        assert chunk
        received += chunk
    # bytes_acked counts the SYN too, so it starts at 1.
    _wait_for(
        lambda: netkeepalive.get_tcp_info(client).bytes_acked == len(payload) + 1,
        "the peer's ACK",
    )
    after = netkeepalive.get_tcp_info(client)
    assert before.bytes_acked == 1
    assert after.bytes_sent == len(payload)
    assert after.data_segs_out is not None
    assert after.data_segs_out >= 1
    assert netkeepalive.get_tcp_info(server).bytes_received == len(payload)
    assert after.unacked == 0


@linux_tcp_info
@pytest.mark.slow
def test_idle_times_grow(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    client.sendall(b"x")
    assert server.recv(1) == b"x"
    first = netkeepalive.get_tcp_info(server)
    time.sleep(0.5)
    second = netkeepalive.get_tcp_info(server)
    # Milliseconds, counted by the kernel's clock (at worst 10 ms ticks).
    assert second.last_data_recv - first.last_data_recv >= 450
    assert second.last_ack_recv >= 450


@linux_tcp_info
def test_accepts_what_the_setters_accept(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, _ = tcp_pair

    class Holder:
        def fileno(self) -> int:
            return client.fileno()

    for form in (client, client.fileno(), Holder()):
        assert netkeepalive.get_tcp_info(form).state_name == "ESTABLISHED"
    with pytest.raises(TypeError):
        netkeepalive.get_tcp_info("not a socket")
    with pytest.raises(ValueError, match="descriptor"):
        netkeepalive.get_tcp_info(-3)


@linux_tcp_info
def test_immutable(client: socket.socket) -> None:
    info = netkeepalive.get_tcp_info(client)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.probes = 3  # type: ignore[misc]
    assert dataclasses.replace(info, state=99).state_name == "UNKNOWN(99)"


@linux_tcp_info
def test_shorter_struct_leaves_later_fields_none(client: socket.socket) -> None:
    # Asking for fewer bytes makes this kernel answer exactly as a kernel
    # with a shorter struct tcp_info would: it copies min(asked, its size).
    fd = client.fileno()
    full = tcp_info._read(fd)
    base = tcp_info._read(fd, tcp_info.BASE_SIZE)
    assert base.length == tcp_info.BASE_SIZE
    assert base.state_name == "ESTABLISHED"
    assert base.rto == full.rto
    assert base.total_retrans == full.total_retrans
    later = [f.name for f in dataclasses.fields(tcp_info.TcpInfo)][34:-1]
    assert later[0] == "pacing_rate"
    assert all(getattr(base, name) is None for name in later)

    # Linux 3.15's size: up to tcpi_max_pacing_rate.
    older = tcp_info._read(fd, tcp_info.BASE_SIZE + 16)
    assert older.max_pacing_rate == full.max_pacing_rate
    assert older.bytes_acked is None

    # A length ending inside a field leaves that field out too.
    cut = tcp_info._read(fd, tcp_info.BASE_SIZE + 12)
    assert cut.pacing_rate == full.pacing_rate
    assert cut.max_pacing_rate is None

    if full.length == tcp_info.FULL_SIZE:
        assert all(getattr(full, name) is not None for name in later)


@linux_tcp_info
def test_fewer_bytes_than_any_linux_returns_is_an_error(client: socket.socket) -> None:
    with pytest.raises(netkeepalive.SocketOptionError) as info:
        tcp_info._read(client.fileno(), 40)
    assert info.value.errno == errno.EINVAL
    assert str(info.value).startswith("getsockopt(TCP_INFO): [Errno 22] returned 40 bytes")


@linux_tcp_info
def test_more_bytes_than_the_buffer_holds_are_never_asked_for(client: socket.socket) -> None:
    # The kernel would write up to the length given into a FULL_SIZE buffer.
    with pytest.raises(ValueError, match=rf"size {tcp_info.FULL_SIZE + 64} is outside"):
        tcp_info._read(client.fileno(), tcp_info.FULL_SIZE + 64)
    with pytest.raises(ValueError, match="size -1 is outside"):
        tcp_info._read(client.fileno(), -1)


@linux_tcp_info
def test_closed_socket_is_ebadf(client: socket.socket) -> None:
    client.close()
    with pytest.raises(netkeepalive.SocketOptionError) as info:
        netkeepalive.get_tcp_info(client)
    assert info.value.errno == errno.EBADF
    assert str(info.value) == "getsockopt(TCP_INFO): [Errno 9] Bad file descriptor"


@linux_tcp_info
def test_not_a_tcp_socket() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp, pytest.raises(netkeepalive.SocketOptionError) as info:
        netkeepalive.get_tcp_info(udp)
    # Linux answers "Operation not supported" for TCP-level options on UDP.
    assert info.value.errno in (errno.EOPNOTSUPP, errno.ENOPROTOOPT)
    assert info.value.call == "getsockopt"
    assert info.value.option == "TCP_INFO"


@pytest.mark.parametrize("table", [DARWIN, FREEBSD], ids=lambda t: t.name)
def test_other_systems_are_refused(
    client: socket.socket, mocker: MockerFixture, table: PlatformTable
) -> None:
    # Other kernels lay out their TCP_INFO differently: refuse, never guess.
    mocker.patch.object(netkeepalive._backends, "backend", return_value=UnixBackend(table))
    with pytest.raises(netkeepalive.UnsupportedOptionError) as info:
        netkeepalive.get_tcp_info(client)
    assert info.value.errno == errno.ENOPROTOOPT
    assert info.value.call == "getsockopt"
    assert str(info.value).startswith(f"TCP_INFO: not supported on {table.name}")
    assert "Linux only" in str(info.value)

"""What docs/node.rst ("Coming from Node") tells a porter, on real sockets.

Each value is read back with ``sock.getsockopt``; the system defaults
with which ``set_keepalive`` leaves the interval and count come from
``/proc/sys/net/ipv4`` of this network namespace.
"""

from __future__ import annotations

import math
import socket
import sys
from pathlib import Path

import pytest

import netkeepalive

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads Linux's TCP_KEEP* options and /proc/sys"
)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "node.rst"


def _read(sock: socket.socket) -> tuple[int, int, int, int]:
    """SO_KEEPALIVE, TCP_KEEPIDLE (s), TCP_KEEPINTVL (s), TCP_KEEPCNT."""
    tcp = socket.IPPROTO_TCP
    return (
        int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0),
        sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
        sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
        sock.getsockopt(tcp, socket.TCP_KEEPCNT),
    )


def _sysctl(name: str) -> int:
    return int(Path("/proc/sys/net/ipv4", name).read_text())


def test_set_keepalive_changes_only_so_keepalive_and_the_idle_time(
    client: socket.socket,
) -> None:
    """The trap: Node's setKeepAlive(true, 10000) also sets 1 s and 10 probes; this does not."""
    assert netkeepalive.set_keepalive(client, True, 10_000) is True
    intvl, probes = _sysctl("tcp_keepalive_intvl"), _sysctl("tcp_keepalive_probes")
    assert _read(client) == (1, 10, intvl, probes)


def test_the_call_that_reproduces_nodes_settings(client: socket.socket) -> None:
    assert "netkeepalive.configure(sock, idle=10_000, interval=1_000, probes=10)" in (
        PAGE.read_text(encoding="utf-8")
    )
    netkeepalive.configure(client, idle=10_000, interval=1_000, probes=10)
    # libuv's uv__tcp_keepalive: the delay in seconds, TCP_KEEPINTVL 1, TCP_KEEPCNT 10.
    assert _read(client) == (1, 10, 1, 10)


@pytest.mark.parametrize(
    ("setter", "value", "error", "message"),
    [
        ("set_keepalive_probes", 2**32 + 5, ValueError, "TCP_KEEPCNT takes 1 to 127"),
        ("set_keepalive_probes", math.nan, TypeError, "probes: expected an int"),
        ("set_keepalive_interval", math.nan, ValueError, "not a finite number"),
        ("set_keepalive_probes", 2.7, TypeError, "probes: expected an int"),
        ("set_keepalive_interval", 500, ValueError, "less than one second"),
    ],
)
def test_what_node_wraps_or_passes_on_raises_here(
    client: socket.socket, setter: str, value: object, error: type, message: str
) -> None:
    before = _read(client)
    with pytest.raises(error, match=message):
        getattr(netkeepalive, setter)(client, value)
    assert _read(client) == before  # nothing reached the kernel


def test_fractions_of_a_second_are_truncated_as_in_node(client: socket.socket) -> None:
    netkeepalive.set_keepalive_interval(client, 1_500)
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 1


def test_detect_within_twenty_seconds_as_the_page_says(client: socket.socket) -> None:
    assert "on Linux 11 s idle, 2 s between 3\nprobes and a 17 s user timeout" in (
        PAGE.read_text(encoding="utf-8")
    )
    netkeepalive.configure(client, **netkeepalive.detect_within(20_000))
    user_timeout = client.getsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18))
    assert (*_read(client), user_timeout) == (1, 11, 2, 3, 17_000)

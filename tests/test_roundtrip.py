"""Every setter round-trips through the Linux kernel on a real TCP connection.

The standard library's ``socket.getsockopt`` serves as an independent
witness: what netkeepalive set must be what the kernel reports through a
path that does not use netkeepalive at all.
"""

from __future__ import annotations

import socket
import sys
from datetime import timedelta

import pytest

import netkeepalive as nk

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

TCP = socket.IPPROTO_TCP


def kernel(sock: socket.socket, option: int, level: int = TCP) -> int:
    return sock.getsockopt(level, option)


def test_keepalive_interval_round_trip(client: socket.socket) -> None:
    assert nk.set_keepalive_interval(client, 7000) is True
    assert kernel(client, socket.TCP_KEEPINTVL) == 7
    assert nk.get_keepalive_interval(client) == 7000


def test_keepalive_idle_round_trip(client: socket.socket) -> None:
    assert nk.set_keepalive_idle(client, 42_000) is True
    assert kernel(client, socket.TCP_KEEPIDLE) == 42
    assert nk.get_keepalive_idle(client) == 42_000


def test_keepalive_probes_round_trip(client: socket.socket) -> None:
    assert nk.set_keepalive_probes(client, 11) is True
    assert kernel(client, socket.TCP_KEEPCNT) == 11
    assert nk.get_keepalive_probes(client) == 11


def test_user_timeout_round_trip(client: socket.socket) -> None:
    assert nk.set_user_timeout(client, 12_345) is True
    assert kernel(client, socket.TCP_USER_TIMEOUT) == 12_345
    assert nk.get_user_timeout(client) == 12_345
    assert nk.set_user_timeout(client, 0) is True  # back to the system default
    assert kernel(client, socket.TCP_USER_TIMEOUT) == 0
    assert nk.get_user_timeout(client) == 0


def test_set_keepalive_toggles_so_keepalive(client: socket.socket) -> None:
    assert nk.get_keepalive(client) is False
    assert nk.set_keepalive(client) is True
    assert kernel(client, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 1
    assert nk.get_keepalive(client) is True
    assert nk.set_keepalive(client, False) is True
    assert kernel(client, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 0
    assert nk.get_keepalive(client) is False


def test_set_keepalive_initial_delay_sets_idle(client: socket.socket) -> None:
    before = kernel(client, socket.TCP_KEEPIDLE)
    nk.set_keepalive(client, True, 0)  # 0 leaves the idle time alone, as in Node
    assert kernel(client, socket.TCP_KEEPIDLE) == before
    nk.set_keepalive(client, True, 3000)
    assert kernel(client, socket.TCP_KEEPIDLE) == 3
    assert kernel(client, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 1


def test_set_keepalive_disable_leaves_idle(client: socket.socket) -> None:
    nk.set_keepalive(client, True, 9000)
    nk.set_keepalive(client, False, 5000)
    assert kernel(client, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 0
    assert kernel(client, socket.TCP_KEEPIDLE) == 9


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1500, 1),  # truncated to whole seconds, as the original does
        (1999.9, 1),
        (2000.0, 2),
        (timedelta(seconds=3, milliseconds=700), 3),
        (timedelta(minutes=2), 120),
        (32_767_999, 32767),  # the largest Linux takes
    ],
)
def test_times_truncate_to_whole_seconds(
    client: socket.socket, value: object, seconds: int
) -> None:
    nk.set_keepalive_interval(client, value)  # type: ignore[arg-type]
    assert kernel(client, socket.TCP_KEEPINTVL) == seconds
    assert nk.get_keepalive_interval(client) == seconds * 1000


def test_user_timeout_keeps_milliseconds(client: socket.socket) -> None:
    nk.set_user_timeout(client, 1500.9)
    assert kernel(client, socket.TCP_USER_TIMEOUT) == 1500
    nk.set_user_timeout(client, timedelta(seconds=2, microseconds=1500))
    assert kernel(client, socket.TCP_USER_TIMEOUT) == 2001


def test_limits_accepted_by_kernel(client: socket.socket) -> None:
    nk.configure(client, idle=32_767_000, interval=1000, probes=127, user_timeout=2**31 - 1)
    assert kernel(client, socket.TCP_KEEPIDLE) == 32767
    assert kernel(client, socket.TCP_KEEPINTVL) == 1
    assert kernel(client, socket.TCP_KEEPCNT) == 127
    assert kernel(client, socket.TCP_USER_TIMEOUT) == 2**31 - 1
    nk.configure(client, idle=1000, interval=32_767_000, probes=1)
    assert kernel(client, socket.TCP_KEEPIDLE) == 1
    assert kernel(client, socket.TCP_KEEPINTVL) == 32767
    assert kernel(client, socket.TCP_KEEPCNT) == 1


def test_camel_case_aliases(client: socket.socket) -> None:
    assert nk.setKeepAliveInterval is nk.set_keepalive_interval
    assert nk.setKeepAliveInterval(client, 4000) is True
    assert nk.getKeepAliveInterval(client) == 4000
    assert nk.setKeepAliveProbes(client, 5) is True
    assert nk.getKeepAliveProbes(client) == 5
    assert nk.setUserTimeout(client, 6000) is True
    assert nk.getUserTimeout(client) == 6000
    assert kernel(client, socket.TCP_KEEPINTVL) == 4
    assert kernel(client, socket.TCP_KEEPCNT) == 5
    assert kernel(client, socket.TCP_USER_TIMEOUT) == 6000


def test_configure_applies_and_reads_back(client: socket.socket) -> None:
    settings = nk.configure(client, idle=2000, interval=1000, probes=4, user_timeout=3000)
    assert settings == nk.Settings(
        enabled=True, idle=2000, interval=1000, probes=4, user_timeout=3000
    )
    assert kernel(client, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 1
    assert kernel(client, socket.TCP_KEEPIDLE) == 2
    assert kernel(client, socket.TCP_KEEPINTVL) == 1
    assert kernel(client, socket.TCP_KEEPCNT) == 4
    assert kernel(client, socket.TCP_USER_TIMEOUT) == 3000
    # The 3000 ms user timeout, not the 4 probes, decides (Linux).
    assert settings.detection_time == 3000


def test_configure_leaves_unnamed_options(client: socket.socket) -> None:
    client.setsockopt(TCP, socket.TCP_KEEPCNT, 7)
    settings = nk.configure(client, interval=3000)
    assert settings.probes == 7
    assert settings.interval == 3000


def test_configure_disable(client: socket.socket) -> None:
    nk.configure(client, idle=5000)
    settings = nk.configure(client, enable=False)
    assert settings.enabled is False
    assert settings.detection_time is None
    assert kernel(client, socket.SO_KEEPALIVE, socket.SOL_SOCKET) == 0


def test_get_settings_reads_kernel_defaults(client: socket.socket) -> None:
    settings = nk.get_settings(client)
    assert settings == nk.Settings(
        enabled=bool(kernel(client, socket.SO_KEEPALIVE, socket.SOL_SOCKET)),
        idle=kernel(client, socket.TCP_KEEPIDLE) * 1000,
        interval=kernel(client, socket.TCP_KEEPINTVL) * 1000,
        probes=kernel(client, socket.TCP_KEEPCNT),
        user_timeout=kernel(client, socket.TCP_USER_TIMEOUT),
    )
    with pytest.raises(AttributeError):
        settings.idle = 5  # type: ignore[misc]


def test_ipv6_socket() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        srv = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    with srv, socket.create_connection(srv.getsockname()[:2]) as c:
        assert nk.configure(c, idle=3000, interval=2000, probes=2).detection_time == 7000
        assert kernel(c, socket.TCP_KEEPINTVL) == 2


def test_listening_socket_accepts_options(listener: socket.socket) -> None:
    nk.configure(listener, idle=4000, probes=3)
    assert kernel(listener, socket.TCP_KEEPIDLE) == 4
    assert kernel(listener, socket.TCP_KEEPCNT) == 3


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (nk.Settings(True, 1000, 1000, 5, 0), 6000),
        (nk.Settings(True, 2000, 1000, 2, 0), 4000),
        # Linux: a user timeout replaces the probe count (net/ipv4/tcp_timer.c).
        (nk.Settings(True, 1000, 1000, 5, 2500), 3000),
        (nk.Settings(True, 1000, 2000, 3, 1500), 3000),
        (nk.Settings(True, 1000, 1000, 2, 8000), 8000),
        (nk.Settings(False, 1000, 1000, 2, 0), None),
        (nk.Settings(True, None, 1000, 2, 0), None),
    ],
)
def test_detection_time_arithmetic(settings: nk.Settings, expected: int | None) -> None:
    assert settings.detection_time == expected

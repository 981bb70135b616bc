"""Which table a system gets, from ``sys.platform`` and ``uname``."""

from __future__ import annotations

import socket
import types
from typing import Any, Optional

import pytest

import netkeepalive
import netkeepalive._backends
from netkeepalive import constants
from netkeepalive._backends.unix import FallbackUnixBackend, UnixBackend


@pytest.mark.parametrize(
    ("platform", "release", "version", "expected"),
    [
        ("linux", "6.8.0", "#1 SMP", "linux"),
        ("android", "5.15.0", "#1", "android"),
        ("darwin", "23.1.0", "Darwin Kernel", "darwin"),
        ("ios", "23.1.0", "Darwin Kernel", "darwin"),
        ("freebsd14", "14.1-RELEASE", "", "freebsd"),
        ("freebsd13", "13.2-RELEASE", "", "freebsd-pre-14"),
        ("netbsd10", "10.0", "", "netbsd"),
        ("netbsd9", "9.3_STABLE", "", "netbsd"),
        ("netbsd8", "8.0", "", "netbsd"),
        ("netbsd7", "7.2", "", "netbsd-pre-8"),
        ("openbsd7", "7.5", "", "openbsd"),
        ("dragonfly6", "6.4-RELEASE", "", "dragonfly"),
        ("dragonfly5", "5.8-RELEASE", "", "dragonfly"),
        ("dragonfly5", "5.6-RELEASE", "", "dragonfly-pre-5.8"),
        ("sunos5", "5.11", "11.4.0.15.0", "solaris"),
        ("sunos5", "5.11", "11.4.42.111.0", "solaris"),
        ("sunos5", "5.11", "11.3", "solaris-pre-11.4"),
        ("sunos5", "5.10", "Generic_150400-59", "solaris-pre-11.4"),
        ("sunos5", "5.11", "snv_134", "solaris-pre-11.4"),
        ("sunos5", "5.11", "omnios-r151046-2b8a7ab", "illumos"),
        ("sunos5", "5.11", "illumos-3f8a1d8ee1", "illumos"),
        ("sunos5", "5.11", "joyent_20240101T000000Z", "illumos"),
        ("aix", "3", "7", "aix"),
        ("aix7", "2", "7", "aix"),
        ("win32", "", "", "win32"),
        ("haiku1", "1", "", "haiku1"),
    ],
)
def test_detect_platform(platform: str, release: str, version: str, expected: str) -> None:
    assert constants.detect_platform(platform, release, version) == expected


def test_unknown_platform_gets_so_keepalive_only() -> None:
    table = constants.table_for("haiku1")
    assert table.name == "haiku1"
    assert table.enable is not None
    assert (table.enable.level, table.enable.number) == (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    assert [table.option(k) for k in ("idle", "interval", "probes", "user_timeout")] == [None] * 4


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("13.3-RELEASE", "freebsd-pre-14"),
        ("13.4-STABLE", "freebsd-pre-14"),
        ("12.4-RELEASE-p9", "freebsd-pre-14"),
        ("14.0-RELEASE", "freebsd"),
        ("14.2-RELEASE-p1", "freebsd"),
        ("15.0-CURRENT", "freebsd"),
    ],
)
def test_freebsd_release_decides_the_user_timeout(release: str, expected: str) -> None:
    assert constants.detect_platform("freebsd13", release, "") == expected


@pytest.mark.parametrize(
    ("build", "name", "idle", "probes", "user_timeout"),
    [
        (22631, "win32", "TCP_KEEPIDLE", "TCP_KEEPCNT", "TCP_MAXRTMS"),
        (16299, "win32", "TCP_KEEPIDLE", "TCP_KEEPCNT", "TCP_MAXRTMS"),
        (16298, "win32 (build 16298)", "SIO_KEEPALIVE_VALS", "TCP_KEEPCNT", "TCP_MAXRTMS"),
        (15063, "win32 (build 15063)", "SIO_KEEPALIVE_VALS", "TCP_KEEPCNT", "TCP_MAXRTMS"),
        (15062, "win32 (build 15062)", "SIO_KEEPALIVE_VALS", None, "TCP_MAXRTMS"),
        (14393, "win32 (build 14393)", "SIO_KEEPALIVE_VALS", None, "TCP_MAXRTMS"),
        (14392, "win32 (build 14392)", "SIO_KEEPALIVE_VALS", None, "TCP_MAXRT"),
        (9600, "win32 (build 9600)", "SIO_KEEPALIVE_VALS", None, "TCP_MAXRT"),
    ],
)
def test_running_windows_build_decides(
    mocker: Any,
    build: int,
    name: str,
    idle: str,
    probes: Optional[str],
    user_timeout: str,
) -> None:
    mocker.patch("sys.platform", "win32")
    info = types.SimpleNamespace(major=10, minor=0, build=build)
    mocker.patch("sys.getwindowsversion", create=True, return_value=info)
    table = constants.table_for()
    assert table.name == name
    assert table.idle is not None
    assert table.idle.name == idle
    assert table.interval is not None
    assert table.interval.readable is (idle == "TCP_KEEPIDLE")
    assert (table.probes.name if table.probes else None) == probes
    assert table.user_timeout is not None
    assert table.user_timeout.name == user_timeout


def test_this_linux_gets_the_plain_backend_on_real_sockets(
    fresh_backend: None, client: socket.socket
) -> None:
    """No fallback bookkeeping on Linux: the plain fast backend, real kernel."""
    if constants.detect_platform() != "linux":
        pytest.skip("Linux only")
    backend = netkeepalive._backends.backend()
    assert type(backend) is UnixBackend
    assert not isinstance(backend, FallbackUnixBackend)
    netkeepalive.configure(client, idle=3_000, interval=2_000, probes=5)
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 3
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 5
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


def test_use_installs_a_backend_for_a_named_table(fresh_backend: None) -> None:
    backend = netkeepalive._backends.use("illumos", lib=object())
    assert netkeepalive._backends.backend() is backend
    assert isinstance(backend, FallbackUnixBackend)
    assert backend.table is constants.ILLUMOS

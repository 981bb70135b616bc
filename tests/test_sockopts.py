"""netkeepalive.socket_options(): tuples for urllib3/httpx, checked like configure()."""

from __future__ import annotations

import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import netkeepalive
from netkeepalive import _backends, constants
from netkeepalive._backends.unix import UnixBackend

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux numbers")


@pytest.fixture
def platform_table(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend the running system is another one (its table only; nothing is called)."""

    def use(table: constants.PlatformTable) -> None:
        monkeypatch.setattr(_backends, "backend", lambda: UnixBackend(table))

    return use


def test_no_arguments_only_turn_keepalive_on() -> None:
    assert netkeepalive.socket_options() == [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]


def test_options_applied_with_setsockopt_read_back_as_requested(client: socket.socket) -> None:
    options = netkeepalive.socket_options(
        idle=10_000, interval=timedelta(seconds=5), probes=3, user_timeout=30_000
    )
    for level, name, value in options:
        client.setsockopt(level, name, value)
    assert netkeepalive.get_settings(client) == netkeepalive.Settings(
        True, 10_000, 5_000, 3, 30_000
    )


@linux_only
def test_linux_tuples_use_the_kernels_units() -> None:
    # 1500 ms -> 1 s as configure() does; user timeout stays in ms.
    assert netkeepalive.socket_options(idle=1_500, interval=2_999, probes=9, user_timeout=750) == [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 9),
        (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 750),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"idle": "10s"}, TypeError, "idle: expected milliseconds"),
        ({"probes": 3.0}, TypeError, "probes: expected an int"),
        ({"probes": True}, TypeError, "probes: expected an int"),
        ({"interval": 999}, ValueError, "TCP_KEEPINTVL takes"),
        ({"probes": 0}, ValueError, "TCP_KEEPCNT takes"),
        ({"user_timeout": -1}, ValueError, "TCP_USER_TIMEOUT takes"),
        ({"idle": float("nan")}, ValueError, "not a finite number"),
    ],
)
def test_bad_values_raise_what_configure_raises(
    client: socket.socket, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        netkeepalive.socket_options(**kwargs)
    with pytest.raises(error, match=match):
        netkeepalive.configure(client, **kwargs)


@linux_only
def test_largest_linux_values_pass_and_one_more_fails() -> None:
    assert netkeepalive.socket_options(probes=127)[-1] == (6, socket.TCP_KEEPCNT, 127)
    with pytest.raises(ValueError, match=r"TCP_KEEPCNT takes 1 to 127"):
        netkeepalive.socket_options(probes=128)
    assert netkeepalive.socket_options(idle=32_767_999)[-1] == (6, socket.TCP_KEEPIDLE, 32_767)
    with pytest.raises(ValueError, match="TCP_KEEPIDLE"):
        netkeepalive.socket_options(idle=32_768_000)


def test_darwin_uses_tcp_keepalive_for_idle_and_bsd_sol_socket(platform_table: Any) -> None:
    platform_table(constants.DARWIN)
    assert netkeepalive.socket_options(idle=60_000, interval=10_000, probes=4) == [
        (0xFFFF, 0x0008, 1),
        (6, 0x10, 60),
        (6, 0x101, 10),
        (6, 0x102, 4),
    ]


def test_missing_option_raises_unsupported(platform_table: Any) -> None:
    platform_table(constants.OPENBSD)
    assert netkeepalive.socket_options() == [(0xFFFF, 0x0008, 1)]
    with pytest.raises(netkeepalive.UnsupportedOptionError, match="not supported on openbsd"):
        netkeepalive.socket_options(probes=3)


@pytest.mark.parametrize("knob", ["idle", "interval"])
def test_windows_refuses_what_needs_the_ioctl(platform_table: Any, knob: str) -> None:
    platform_table(constants.windows_table(15063))  # before TCP_KEEPIDLE/TCP_KEEPINTVL
    with pytest.raises(netkeepalive.UnsupportedOptionError) as info:
        netkeepalive.socket_options(**{knob: 10_000})
    text = str(info.value)
    assert "SIO_KEEPALIVE_VALS" in text
    assert "netkeepalive.requests.KeepAliveAdapter" in text
    assert info.value.option == knob


def test_windows_setsockopt_options_still_come_out(platform_table: Any) -> None:
    platform_table(constants.WINDOWS)
    assert netkeepalive.socket_options(idle=60_000, probes=5, user_timeout=20_000) == [
        (0xFFFF, 0x0008, 1),
        (6, 3, 60),  # TCP_KEEPIDLE, build 16299+
        (6, 16, 5),  # TCP_KEEPCNT
        (6, 14, 20_000),  # TCP_MAXRTMS
    ]
    with pytest.raises(ValueError, match="TCP_KEEPCNT takes 1 to 255"):
        netkeepalive.socket_options(probes=256)


@linux_only
def test_docs_example_output_is_what_linux_returns() -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "integrations.rst"
    lines = page.read_text(encoding="utf-8").splitlines()
    call = next(i for i, line in enumerate(lines) if ">>> netkeepalive.socket_options(" in line)
    shown = lines[call + 1].strip()
    assert shown == repr(netkeepalive.socket_options(idle=10_000, interval=5_000, probes=3))

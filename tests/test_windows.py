"""The Windows backend, simulated: SIO_KEEPALIVE_VALS, SOCKET handles, WSA errors.

``ws2_32`` is replaced by ``fakelib.FakeWs2``, whose functions check their
arguments against the ``argtypes`` the backend sets, as ctypes does.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import sys
from typing import Any, Callable

import pytest
from helpers.fakelib import (
    SIO_KEEPALIVE_VALS,
    WSAEINVAL,
    WSAENOTSOCK,
    Call,
    FakeWs2,
    Kernel,
    known_options,
)

import netkeepalive
import netkeepalive._backends
import netkeepalive._libc
from netkeepalive import Settings, UnsupportedOptionError
from netkeepalive._backends.windows import INVALID_SOCKET, WindowsBackend
from netkeepalive.constants import windows_table

TCP = 6
FD = 7


def keepalive_vals(onoff: int, idle: int, interval: int) -> bytes:
    """struct tcp_keepalive as Windows reads it: three 32-bit u_long."""
    return b"".join(n.to_bytes(4, sys.byteorder) for n in (onoff, idle, interval))


def test_struct_is_twelve_bytes_of_u_long() -> None:
    from netkeepalive._backends.windows import tcp_keepalive

    assert ctypes.sizeof(tcp_keepalive) == 12
    ka = tcp_keepalive(1, 7_200_000, 1_000)
    assert bytes(ka) == keepalive_vals(1, 7_200_000, 1_000)


def test_old_build_sends_keepalive_vals(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=15063)
    assert netkeepalive.set_keepalive_idle(FD, 10_000) is True
    # The interval not yet set goes out as Windows' default, 1 s.
    assert sim.kernel.calls == [
        Call("WSAIoctl", FD, 0, SIO_KEEPALIVE_VALS, keepalive_vals(1, 10_000, 1_000), 12)
    ]
    sim.kernel.calls.clear()
    netkeepalive.set_keepalive_interval(FD, 2_500)
    # Milliseconds go through unrounded, and the idle time set before is kept
    # once SO_KEEPALIVE shows the handle still belongs to that socket.
    assert sim.kernel.calls == [
        Call("getsockopt", FD, 0xFFFF, 8, 1, 4),
        Call("WSAIoctl", FD, 0, SIO_KEEPALIVE_VALS, keepalive_vals(1, 10_000, 2_500), 12),
    ]
    # The ioctl turns keepalive on, which getsockopt(SO_KEEPALIVE) sees.
    assert netkeepalive.get_keepalive(FD) is True


def test_old_build_remembers_per_socket(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=10240)
    netkeepalive.set_keepalive_idle(FD, 10_000)
    netkeepalive.set_keepalive_interval(FD + 1, 3_000)
    assert [c.value for c in sim.kernel.calls] == [
        keepalive_vals(1, 10_000, 1_000),
        keepalive_vals(1, 7_200_000, 3_000),
    ]


def test_old_build_configure_and_set_keepalive(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=15063)
    settings = netkeepalive.configure(FD, idle=20_000, interval=5_000, probes=4, user_timeout=900)
    # The count is written, but SIO_KEEPALIVE_VALS follows it, and what the
    # ioctl does to the count is undocumented: it is not reported.
    assert settings == Settings(True, None, None, None, 900)
    sent = [c for c in sim.kernel.calls if c.func != "getsockopt"]
    assert sent == [
        Call("setsockopt", FD, TCP, 14, 900, 4),  # TCP_MAXRTMS, ms
        Call("setsockopt", FD, TCP, 16, 4, 4),  # TCP_KEEPCNT
        Call("WSAIoctl", FD, 0, SIO_KEEPALIVE_VALS, keepalive_vals(1, 7_200_000, 5_000), 12),
        Call("WSAIoctl", FD, 0, SIO_KEEPALIVE_VALS, keepalive_vals(1, 20_000, 5_000), 12),
        Call("setsockopt", FD, 0xFFFF, 8, 1, 4),  # SO_KEEPALIVE
        # The idle time once more after SO_KEEPALIVE=1, as on every system.
        Call("WSAIoctl", FD, 0, SIO_KEEPALIVE_VALS, keepalive_vals(1, 20_000, 5_000), 12),
    ]
    sim.kernel.calls.clear()
    netkeepalive.set_keepalive(FD, False, 30_000)  # disabling: the delay is not applied
    assert sim.kernel.calls == [Call("setsockopt", FD, 0xFFFF, 8, 0, 4)]


@pytest.mark.parametrize("build", [15063, 16298])
def test_count_before_16299_is_not_claimed(simulate: Callable[..., Any], build: int) -> None:
    """TCP_KEEPCNT is taken from 15063 on, but read back as the count in force only from 16299."""
    sim = simulate("win32", build=build)
    assert netkeepalive.set_keepalive_probes(FD, 4) is True
    with pytest.raises(UnsupportedOptionError, match="TCP_KEEPCNT cannot be read back"):
        netkeepalive.get_keepalive_probes(FD)
    assert [c.func for c in sim.kernel.calls] == ["setsockopt"]
    assert netkeepalive.get_settings(FD).probes is None


@pytest.mark.parametrize(
    "getter", [netkeepalive.get_keepalive_idle, netkeepalive.get_keepalive_interval]
)
def test_old_build_getters_say_it_cannot_be_read_back(
    simulate: Callable[..., Any], getter: Callable[[Any], int]
) -> None:
    sim = simulate("win32", build=16298)
    netkeepalive.set_keepalive_idle(FD, 10_000)
    sim.kernel.calls.clear()
    with pytest.raises(
        UnsupportedOptionError, match="SIO_KEEPALIVE_VALS cannot be read back"
    ) as info:
        getter(FD)
    assert info.value.errno == errno.ENOPROTOOPT
    assert info.value.call == "getsockopt"
    assert "win32 (build 16298)" in str(info.value)
    assert "16299" in str(info.value)
    assert sim.kernel.calls == []


def test_old_build_keepalive_vals_range(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=10240)
    netkeepalive.set_keepalive_idle(FD, 2**32 - 1)
    assert sim.kernel.calls[-1].value == keepalive_vals(1, 2**32 - 1, 1_000)
    with pytest.raises(ValueError, match="SIO_KEEPALIVE_VALS takes 1 to 4294967295 ms"):
        netkeepalive.set_keepalive_idle(FD, 2**32)
    assert len(sim.kernel.calls) == 1


def test_failed_ioctl_raises_and_is_not_remembered(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=15063)
    sim.kernel.failures["WSAIoctl", 0, SIO_KEEPALIVE_VALS] = WSAEINVAL
    with pytest.raises(OSError, match=r"^WSAIoctl\(SIO_KEEPALIVE_VALS\): \[Errno") as info:
        netkeepalive.set_keepalive_idle(FD, 10_000)
    assert info.value.winerror == WSAEINVAL  # type: ignore[attr-defined]
    assert info.value.errno == errno.EINVAL
    del sim.kernel.failures["WSAIoctl", 0, SIO_KEEPALIVE_VALS]
    netkeepalive.set_keepalive_interval(FD, 2_000)
    assert sim.kernel.calls[-1].value == keepalive_vals(1, 7_200_000, 2_000)


def test_new_build_uses_socket_options_in_seconds(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=19045)
    settings = netkeepalive.configure(FD, idle=20_500, interval=5_000, probes=255, user_timeout=1)
    assert settings == Settings(True, 20_000, 5_000, 255, 1)
    assert [c for c in sim.kernel.calls if c.func == "WSAIoctl"] == []
    with pytest.raises(ValueError, match="TCP_KEEPCNT takes 1 to 255"):
        netkeepalive.set_keepalive_probes(FD, 256)


def test_build_before_1607_uses_tcp_maxrt_seconds(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=10586)
    netkeepalive.set_user_timeout(FD, 3_999)
    assert sim.kernel.calls == [Call("setsockopt", FD, TCP, 5, 3, 4)]
    assert netkeepalive.get_user_timeout(FD) == 3_000
    with pytest.raises(ValueError, match="TCP_MAXRT takes"):
        netkeepalive.set_user_timeout(FD, 500)


def test_boolean_so_keepalive_is_read_as_one_byte(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=22631, boolean_keepalive=True)
    # Leave a large value in the buffer first: a 1-byte answer must not be
    # read together with what the other three bytes held before.
    netkeepalive.set_user_timeout(FD, 0x01020300)
    assert netkeepalive.get_user_timeout(FD) == 0x01020300
    assert netkeepalive.get_keepalive(FD) is False
    assert sim.kernel.calls[-1] == Call("getsockopt", FD, 0xFFFF, 8, 0, 1)
    netkeepalive.set_keepalive(FD, True)
    assert netkeepalive.get_keepalive(FD) is True


def test_socket_is_a_pointer_sized_unsigned_handle(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=22631)
    handle = 2**40 + 3 if ctypes.sizeof(ctypes.c_void_p) == 8 else 2**31 + 3
    netkeepalive.set_keepalive_probes(handle, 5)
    assert sim.kernel.calls == [Call("setsockopt", handle, TCP, 16, 5, 4)]
    socket_type = sim.lib.setsockopt.argtypes[0]
    assert ctypes.sizeof(socket_type) == ctypes.sizeof(ctypes.c_void_p)
    assert socket_type(-1).value > 0  # unsigned
    assert sim.lib.setsockopt.argtypes[3] is ctypes.POINTER(ctypes.c_char)
    assert sim.lib.getsockopt.argtypes[3] is ctypes.POINTER(ctypes.c_char)
    assert sim.lib.WSAIoctl.argtypes[0] is socket_type


def test_closed_socket_is_invalid_socket_and_errors_carry_winerror(
    simulate: Callable[..., Any],
) -> None:
    sim = simulate("win32", build=22631)
    sock = socket.socket()
    sock.close()
    with pytest.raises(OSError, match=r"^setsockopt\(TCP_KEEPCNT\): .*WinError 10038") as info:
        netkeepalive.set_keepalive_probes(sock, 5)
    exc = info.value
    assert exc.winerror == WSAENOTSOCK  # type: ignore[attr-defined]
    assert exc.errno == errno.ENOTSOCK
    assert sim.kernel.calls[-1].fd == INVALID_SOCKET
    with pytest.raises(OSError, match=r"^getsockopt\(SO_KEEPALIVE\): ") as info:
        netkeepalive.get_keepalive(sock)
    assert info.value.winerror == WSAENOTSOCK  # type: ignore[attr-defined]


def test_refused_option_maps_to_enoprotoopt(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=22631)
    sim.kernel.known.discard((TCP, 16))  # a kernel without TCP_KEEPCNT
    with pytest.raises(OSError, match=r"^setsockopt\(TCP_KEEPCNT\): ") as info:
        netkeepalive.set_keepalive_probes(FD, 5)
    assert info.value.errno == errno.ENOPROTOOPT
    assert info.value.winerror == 10042  # type: ignore[attr-defined]


def test_unknown_wsa_error_keeps_winerror_without_errno(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=22631)
    sim.kernel.failures["setsockopt", TCP, 16] = 10093  # WSANOTINITIALISED
    with pytest.raises(OSError, match="WinError 10093") as info:
        netkeepalive.set_keepalive_probes(FD, 5)
    assert info.value.errno is None
    assert info.value.winerror == 10093  # type: ignore[attr-defined]


# -- loading ws2_32 ---------------------------------------------------------


@pytest.fixture
def win_dll(mocker: Any) -> Any:
    """``ctypes.WinDLL`` (absent here) returning a fake ws2_32."""
    netkeepalive._libc.reset()
    lib = FakeWs2(Kernel())
    lib.kernel.known = known_options(windows_table(22631))
    yield mocker.patch.object(ctypes, "WinDLL", create=True, return_value=lib)
    netkeepalive._libc.reset()


def test_ws2_32_is_loaded_lazily_once(win_dll: Any, simulate: Callable[..., Any]) -> None:
    backend = WindowsBackend(windows_table(22631))
    assert win_dll.call_count == 0
    backend.set(FD, backend.option("probes"), 3)
    backend.get(FD, backend.option("probes"))
    assert netkeepalive._libc.ws2_32() is win_dll.return_value
    win_dll.assert_called_once_with("ws2_32")
    assert win_dll.return_value.kernel.calls == [
        Call("setsockopt", FD, TCP, 16, 3, 4),
        Call("getsockopt", FD, TCP, 16, 3, 4),
    ]


def test_detected_windows_uses_ws2_32(win_dll: Any, simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=22631, lib=None)
    # simulate() gave the backend its own fake; a backend made by detection
    # alone loads ws2_32 through the loader.
    netkeepalive._backends.reset()
    backend = netkeepalive._backends.backend()
    assert isinstance(backend, WindowsBackend)
    netkeepalive.set_keepalive(FD, True)
    assert sim.kernel.calls == []
    assert win_dll.return_value.kernel.calls == [Call("setsockopt", FD, 0xFFFF, 8, 1, 4)]


def test_ws2_32_failure_is_remembered_until_reset(mocker: Any) -> None:
    netkeepalive._libc.reset()
    win_dll = mocker.patch.object(
        ctypes, "WinDLL", create=True, side_effect=OSError("[WinError 126] not found")
    )
    try:
        for _ in range(2):
            with pytest.raises(OSError, match=r"ws2_32.*WinError 126"):
                netkeepalive._libc.ws2_32()
        assert win_dll.call_count == 1
        netkeepalive._libc.reset()
        with pytest.raises(netkeepalive.LibraryNotFoundError):
            netkeepalive._libc.ws2_32()
        assert win_dll.call_count == 2
    finally:
        netkeepalive._libc.reset()


@pytest.mark.skipif(hasattr(ctypes, "WinDLL"), reason="this system has WinDLL")
def test_ws2_32_without_windll_says_so() -> None:
    netkeepalive._libc.reset()
    try:
        with pytest.raises(
            netkeepalive.LibraryNotFoundError, match="WinDLL exists only on Windows"
        ):
            netkeepalive._libc.ws2_32()
    finally:
        netkeepalive._libc.reset()


# -- socket_options(): no ioctl can hide in a list of setsockopt tuples -------


@pytest.mark.parametrize("build", [16298, 15063, 10240])
def test_socket_options_refuse_idle_and_interval_before_16299(
    simulate: Callable[..., Any], build: int
) -> None:
    sim = simulate("win32", build=build)
    for knob in ("idle", "interval"):
        with pytest.raises(UnsupportedOptionError, match="SIO_KEEPALIVE_VALS") as info:
            netkeepalive.socket_options(**{knob: 10_000})
        assert f"build {build}" in str(info.value)
    assert sim.kernel.calls == []


@pytest.mark.parametrize("build", [16299, 19045, 22631])
def test_socket_options_carry_idle_and_interval_from_16299(
    simulate: Callable[..., Any], build: int
) -> None:
    simulate("win32", build=build)
    options = netkeepalive.socket_options(idle=30_500, interval=5_000, probes=4)
    # SO_KEEPALIVE, TCP_KEEPIDLE (3) and TCP_KEEPINTVL (17) in seconds, TCP_KEEPCNT (16).
    assert options == [(0xFFFF, 8, 1), (TCP, 3, 30), (TCP, 17, 5), (TCP, 16, 4)]


def test_socket_options_on_build_15063(simulate: Callable[..., Any]) -> None:
    simulate("win32", build=15063)
    assert netkeepalive.socket_options(probes=4, user_timeout=1_500) == [
        (0xFFFF, 8, 1),
        (TCP, 16, 4),
        (TCP, 14, 1_500),
    ]


def test_socket_options_follow_the_build(simulate: Callable[..., Any]) -> None:
    simulate("win32", build=10240)
    assert netkeepalive.socket_options(user_timeout=20_500) == [(0xFFFF, 8, 1), (TCP, 5, 20)]
    with pytest.raises(UnsupportedOptionError, match=r"win32 \(build 10240\)"):
        netkeepalive.socket_options(probes=5)


# -- the kernel's build, not the one a manifest-less host is told ------------


def test_kernel_build_from_rtl_get_version_wins_over_getwindowsversion(mocker: Any) -> None:
    """sys.getwindowsversion() may say 9200 to a program without a Windows 10 manifest."""
    from netkeepalive._backends import windows

    def rtl_get_version(info_ref: Any) -> int:
        info = info_ref._obj
        assert info.dwOSVersionInfoSize == ctypes.sizeof(info)  # the caller set the size
        info.dwMajorVersion, info.dwBuildNumber = 10, 19045
        return 0  # STATUS_SUCCESS

    ntdll = mocker.Mock(RtlGetVersion=rtl_get_version)
    mocker.patch.object(ctypes, "WinDLL", create=True, side_effect=lambda name: ntdll)
    mocker.patch.object(sys, "platform", "win32")
    told = mocker.Mock(build=9200)
    mocker.patch.object(sys, "getwindowsversion", create=True, return_value=told)
    table = windows.running_table()
    assert table.name == "win32"
    assert table.idle is not None
    assert table.idle.name == "TCP_KEEPIDLE"


@pytest.mark.parametrize("failure", ["raises", "status"])
def test_getwindowsversion_only_where_rtl_get_version_fails(mocker: Any, failure: str) -> None:
    from netkeepalive._backends import windows

    if failure == "raises":
        mocker.patch.object(ctypes, "WinDLL", create=True, side_effect=OSError("no ntdll"))
    else:
        ntdll = mocker.Mock(RtlGetVersion=lambda ref: 0xC0000001)  # STATUS_UNSUCCESSFUL
        mocker.patch.object(ctypes, "WinDLL", create=True, side_effect=lambda name: ntdll)
    mocker.patch.object(sys, "platform", "win32")
    told = mocker.Mock(build=15063)
    mocker.patch.object(sys, "getwindowsversion", create=True, return_value=told)
    assert windows.running_table().name == "win32 (build 15063)"


# -- user_timeout=0 has no documented meaning on Windows ----------------------


@pytest.mark.parametrize(("build", "name"), [(19045, "TCP_MAXRTMS"), (10240, "TCP_MAXRT")])
def test_user_timeout_zero_is_refused_on_windows(
    simulate: Callable[..., Any], build: int, name: str
) -> None:
    sim = simulate("win32", build=build)
    with pytest.raises(ValueError, match=f"{name} takes 1 to"):
        netkeepalive.set_user_timeout(FD, 0)
    with pytest.raises(ValueError, match=name):
        netkeepalive.configure(FD, idle=10_000, user_timeout=0)
    assert sim.kernel.calls == []


# -- the SIO_KEEPALIVE_VALS memory: bounded, and never trusts a reused handle --


def test_reused_handle_starts_from_the_defaults(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=15063)
    netkeepalive.set_keepalive_idle(FD, 10_000)
    # The socket is closed and a new one gets the same handle: keepalive off.
    sim.kernel.values[FD, 0xFFFF, 8] = 0
    netkeepalive.set_keepalive_interval(FD, 3_000)
    assert sim.kernel.calls[-1].value == keepalive_vals(1, 7_200_000, 3_000)


def test_turning_keepalive_off_forgets_the_handle(simulate: Callable[..., Any]) -> None:
    sim = simulate("win32", build=15063)
    netkeepalive.set_keepalive_idle(FD, 10_000)
    netkeepalive.set_keepalive(FD, False)
    sim.kernel.calls.clear()
    netkeepalive.set_keepalive_interval(FD, 3_000)
    # Nothing remembered: no SO_KEEPALIVE check, Windows' default idle time.
    assert sim.kernel.calls == [
        Call("WSAIoctl", FD, 0, SIO_KEEPALIVE_VALS, keepalive_vals(1, 7_200_000, 3_000), 12)
    ]


def test_memory_is_bounded(simulate: Callable[..., Any], mocker: Any) -> None:
    from netkeepalive._backends import windows

    mocker.patch.object(windows, "MAX_REMEMBERED", 3)
    sim = simulate("win32", build=15063)
    for handle in range(10, 15):
        netkeepalive.set_keepalive_idle(handle, 10_000 + handle)
    backend = sim.backend
    assert isinstance(backend, WindowsBackend)
    assert list(backend._sent) == [12, 13, 14]  # the least recently set went first
    sim.kernel.calls.clear()
    netkeepalive.set_keepalive_interval(10, 3_000)  # forgotten: default idle time
    assert sim.kernel.calls[-1].value == keepalive_vals(1, 7_200_000, 3_000)

"""Bad input and kernel refusals, on real sockets and descriptors."""

from __future__ import annotations

import errno
import math
import os
import pickle
import re
import socket
import sys
from datetime import timedelta
from enum import IntEnum

import pytest

import netkeepalive as nk
from netkeepalive import _backends
from netkeepalive.constants import LINUX

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

TCP = socket.IPPROTO_TCP
SETTERS = [
    nk.set_keepalive_idle,
    nk.set_keepalive_interval,
    nk.set_keepalive_probes,
    nk.set_user_timeout,
]
GETTERS = [
    nk.get_keepalive,
    nk.get_keepalive_idle,
    nk.get_keepalive_interval,
    nk.get_keepalive_probes,
    nk.get_user_timeout,
    nk.get_settings,
]


def snapshot(sock: socket.socket) -> tuple[int, ...]:
    """The five options as the kernel reports them to the standard library."""
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
    )


# -- closed sockets, wrong kinds of descriptor: the kernel's own errors ------


@pytest.mark.parametrize("getter", GETTERS)
def test_closed_socket_getters_raise_ebadf(listener: socket.socket, getter) -> None:  # type: ignore[no-untyped-def]
    sock = socket.create_connection(listener.getsockname())
    sock.close()
    with pytest.raises(OSError, match=r"getsockopt\(\w+\): \[Errno 9\]") as info:
        getter(sock)
    assert info.value.errno == errno.EBADF
    assert info.value.strerror == os.strerror(errno.EBADF)


def test_closed_socket_setter_message(listener: socket.socket) -> None:
    sock = socket.create_connection(listener.getsockname())
    sock.close()
    with pytest.raises(OSError) as info:
        nk.set_keepalive_interval(sock, 1000)
    assert str(info.value) == "setsockopt(TCP_KEEPINTVL): [Errno 9] Bad file descriptor"
    assert isinstance(info.value, nk.SocketOptionError)
    assert (info.value.call, info.value.option) == ("setsockopt", "TCP_KEEPINTVL")


def test_closed_descriptor_number(listener: socket.socket) -> None:
    sock = socket.create_connection(listener.getsockname())
    fd = sock.detach()
    os.close(fd)
    with pytest.raises(OSError) as info:
        nk.set_keepalive_probes(fd, 3)
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("setter", SETTERS)
def test_udp_socket_refused_by_kernel(setter) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(OSError) as info:
        setter(udp, 3 if setter is nk.set_keepalive_probes else 2000)
    assert info.value.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP)
    assert str(info.value).startswith("setsockopt(TCP_")


def test_unix_socket_refused_by_kernel() -> None:
    a, b = socket.socketpair()
    with a, b, pytest.raises(OSError) as info:
        nk.get_keepalive_interval(a)
    assert info.value.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP)


def test_pipe_is_not_a_socket() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            nk.set_keepalive_interval(r, 1000)
        assert info.value.errno == errno.ENOTSOCK
        with pytest.raises(OSError) as info:
            nk.get_settings(w)
        assert info.value.errno == errno.ENOTSOCK
    finally:
        os.close(r)
        os.close(w)


def test_kernel_refusal_beyond_netkeepalive_checks(client: socket.socket) -> None:
    """The ranges in constants.LINUX are the kernel's: one past them is EINVAL."""
    backend = _backends.backend()
    for opt in (LINUX.idle, LINUX.interval, LINUX.probes):
        assert opt is not None
        backend.set(client.fileno(), opt, opt.maximum)
        with pytest.raises(OSError) as info:
            backend.set(client.fileno(), opt, opt.maximum + 1)
        assert info.value.errno == errno.EINVAL
        assert str(info.value) == f"setsockopt({opt.name}): [Errno 22] Invalid argument"
        with pytest.raises(OSError):
            backend.set(client.fileno(), opt, 0)
    assert LINUX.user_timeout is not None
    with pytest.raises(OSError) as info:
        backend.set(client.fileno(), LINUX.user_timeout, -1)
    assert info.value.errno == errno.EINVAL


# -- wrong types: TypeError, nothing touched ---------------------------------


class NotASocket:
    pass


@pytest.mark.parametrize("thing", [None, "3", 3.0, NotASocket(), True, b"x"])
def test_wrong_socket_type(thing: object) -> None:
    with pytest.raises(TypeError, match=r"socket\.socket"):
        nk.set_keepalive_interval(thing, 1000)
    with pytest.raises(TypeError, match=r"socket\.socket"):
        nk.get_settings(thing)


def test_negative_descriptor() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        nk.get_keepalive(-3)


def test_fileno_without_descriptor() -> None:
    import io

    with pytest.raises(TypeError, match="no descriptor"):
        nk.get_keepalive(io.BytesIO())


def test_fileno_returning_non_int() -> None:
    class Odd:
        def fileno(self) -> str:
            return "4"

    with pytest.raises(TypeError, match="returned str"):
        nk.get_keepalive(Odd())


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        (nk.set_keepalive_interval, "1000"),
        (nk.set_keepalive_interval, True),
        (nk.set_keepalive_idle, None),
        (nk.set_user_timeout, [5]),
        (nk.set_keepalive_probes, 3.0),
        (nk.set_keepalive_probes, False),
        (nk.set_keepalive_probes, "3"),
    ],
)
def test_wrong_value_type(client: socket.socket, setter, value: object) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(client)
    with pytest.raises(TypeError):
        setter(client, value)
    assert snapshot(client) == before


def test_enable_must_be_bool(client: socket.socket) -> None:
    with pytest.raises(TypeError, match="enable"):
        nk.set_keepalive(client, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="enable"):
        nk.configure(client, enable="yes")  # type: ignore[arg-type]


# -- values the kernel cannot take: ValueError naming option and range ------


@pytest.mark.parametrize(
    ("setter", "value", "option", "accepted"),
    [
        (nk.set_keepalive_interval, 999, "TCP_KEEPINTVL", "1 to 32767 whole seconds"),
        (nk.set_keepalive_interval, 0, "TCP_KEEPINTVL", "1 to 32767 whole seconds"),
        (nk.set_keepalive_interval, -1000, "TCP_KEEPINTVL", "1000 to 32767999 ms"),
        (nk.set_keepalive_interval, 32_768_000, "TCP_KEEPINTVL", "1 to 32767 whole seconds"),
        (nk.set_keepalive_interval, math.nan, "TCP_KEEPINTVL", "32767"),
        (nk.set_keepalive_interval, math.inf, "TCP_KEEPINTVL", "32767"),
        (nk.set_keepalive_idle, 0.5, "TCP_KEEPIDLE", "1 to 32767 whole seconds"),
        (nk.set_keepalive_idle, timedelta(milliseconds=999), "TCP_KEEPIDLE", "32767"),
        (nk.set_keepalive_idle, timedelta(days=-1), "TCP_KEEPIDLE", "32767"),
        (nk.set_keepalive_idle, 2**64 * 1000, "TCP_KEEPIDLE", "32767"),
        (nk.set_keepalive_probes, 0, "TCP_KEEPCNT", "1 to 127"),
        (nk.set_keepalive_probes, -1, "TCP_KEEPCNT", "1 to 127"),
        (nk.set_keepalive_probes, 128, "TCP_KEEPCNT", "1 to 127"),
        (nk.set_keepalive_probes, 2**32 + 3, "TCP_KEEPCNT", "1 to 127"),
        (nk.set_user_timeout, -1, "TCP_USER_TIMEOUT", "0 to 2147483647 ms"),
        (nk.set_user_timeout, -0.5, "TCP_USER_TIMEOUT", "0 to 2147483647 ms"),
        (nk.set_user_timeout, 2**31, "TCP_USER_TIMEOUT", "0 to 2147483647 ms"),
        (nk.set_user_timeout, 2**32 + 5, "TCP_USER_TIMEOUT", "0 to 2147483647 ms"),
        (nk.set_user_timeout, math.nan, "TCP_USER_TIMEOUT", "0 to 2147483647 ms"),
    ],
)
def test_out_of_range_values(  # type: ignore[no-untyped-def]
    client: socket.socket, setter, value: object, option: str, accepted: str
) -> None:
    """Nothing is wrapped to fit a C int: 2**32 + 3 probes is not 3 probes."""
    before = snapshot(client)
    with pytest.raises(ValueError, match=option) as info:
        setter(client, value)
    assert accepted in str(info.value)
    assert snapshot(client) == before


def test_initial_delay_validated_even_when_disabling(client: socket.socket) -> None:
    before = snapshot(client)
    with pytest.raises(ValueError, match=r"initial_delay.*TCP_KEEPIDLE"):
        nk.set_keepalive(client, False, 500)
    with pytest.raises(TypeError, match="initial_delay"):
        nk.set_keepalive(client, True, "1s")  # type: ignore[arg-type]
    assert snapshot(client) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"idle": 1000, "interval": 1000, "probes": 0},
        {"idle": 1000, "interval": 1000, "probes": 3, "user_timeout": -5},
        {"idle": 1000, "interval": "fast"},
        {"idle": 999, "probes": 3},
        {"probes": 3, "enable": None},
    ],
)
def test_configure_validates_everything_first(client: socket.socket, kwargs) -> None:  # type: ignore[no-untyped-def]
    """One bad argument, anywhere in the list, and nothing reaches the kernel."""
    before = snapshot(client)
    with pytest.raises((TypeError, ValueError)):
        nk.configure(client, **kwargs)
    assert snapshot(client) == before


def test_configure_kernel_refusal_changes_nothing() -> None:
    """A UDP socket is refused on the first option; keepalive is not switched on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(OSError) as info:
            nk.configure(udp, idle=1000, interval=1000, probes=2, user_timeout=3000)
        assert info.value.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP)
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


# -- a time under one unit of its option: ValueError, never a silent 0 ------


@pytest.mark.parametrize(
    "value",
    [timedelta(microseconds=1), timedelta(microseconds=500), timedelta(microseconds=999), 0.5],
    ids=repr,
)
def test_user_timeout_under_one_millisecond(client: socket.socket, value: object) -> None:
    """Not 0 (the system default) in the kernel: a ValueError that says milliseconds."""
    client.setsockopt(TCP, socket.TCP_USER_TIMEOUT, 4321)
    before = snapshot(client)
    calls = {
        "set_user_timeout": lambda: nk.set_user_timeout(client, value),  # type: ignore[arg-type]
        "setUserTimeout": lambda: nk.setUserTimeout(client, value),  # type: ignore[arg-type]
        "configure": lambda: nk.configure(client, user_timeout=value),  # type: ignore[arg-type]
        "socket_options": lambda: nk.socket_options(user_timeout=value),  # type: ignore[arg-type]
    }
    for name, call in calls.items():
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert message.startswith("user_timeout: "), name
        assert "is less than one millisecond, the unit of TCP_USER_TIMEOUT; " in message, name
        assert message.endswith("TCP_USER_TIMEOUT takes 0 to 2147483647 ms"), name
        assert not re.search(r"\bseconds?\b", message), message
    assert snapshot(client) == before


@pytest.mark.parametrize(
    "value", [timedelta(microseconds=1), timedelta(microseconds=999_999), 999, 0.001], ids=repr
)
@pytest.mark.parametrize(
    ("setter", "option"),
    [(nk.set_keepalive_idle, "TCP_KEEPIDLE"), (nk.set_keepalive_interval, "TCP_KEEPINTVL")],
)
def test_time_under_one_second_where_the_kernel_takes_seconds(  # type: ignore[no-untyped-def]
    client: socket.socket, setter, option: str, value: object
) -> None:
    before = snapshot(client)
    with pytest.raises(ValueError) as info:
        setter(client, value)
    assert f"is less than one second, the unit of {option}; {option} takes 1 to 32767 whole" in (
        str(info.value)
    )
    assert snapshot(client) == before


# -- int subclasses count as the int they equal -------------------------------


class Millis(IntEnum):
    MINUS_ONE = -1
    ZERO = 0
    TWO_SECONDS = 2000


class Probes(IntEnum):
    NONE = 0
    THREE = 3


def test_int_subclass_zero_is_zero(client: socket.socket) -> None:
    client.setsockopt(TCP, socket.TCP_KEEPIDLE, 9)
    assert nk.set_keepalive(client, True, Millis.ZERO) is True  # like 0: idle left alone
    assert snapshot(client)[:2] == (1, 9)
    assert nk.set_keepalive(client, False, Millis.ZERO) is True
    assert snapshot(client)[:2] == (0, 9)
    nk.set_user_timeout(client, 4321)
    assert nk.set_user_timeout(client, Millis.ZERO) is True  # back to the system default
    assert client.getsockopt(TCP, socket.TCP_USER_TIMEOUT) == 0
    nk.configure(client, idle=Millis.TWO_SECONDS, probes=Probes.THREE, user_timeout=Millis.ZERO)
    assert snapshot(client)[1:] == (2, client.getsockopt(TCP, socket.TCP_KEEPINTVL), 3, 0)
    options = nk.socket_options(idle=Millis.TWO_SECONDS, user_timeout=Millis.ZERO)
    assert options == [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), (TCP, 4, 2), (TCP, 18, 0)]
    assert [type(value) for _level, _name, value in options] == [int, int, int]


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        (nk.set_keepalive_probes, Probes.NONE),
        (nk.set_keepalive_idle, Millis.ZERO),
        (nk.set_user_timeout, Millis.MINUS_ONE),
    ],
)
def test_int_subclass_errors_read_as_the_plain_int(  # type: ignore[no-untyped-def]
    client: socket.socket, setter, value: int
) -> None:
    with pytest.raises(ValueError) as subclass:
        setter(client, value)
    with pytest.raises(ValueError) as plain:
        setter(client, int(value))
    assert str(subclass.value) == str(plain.value)


# -- the exception type itself ------------------------------------------------


def test_socket_option_error_pickles() -> None:
    exc = nk.SocketOptionError.from_errno(errno.EBADF, "setsockopt", "TCP_KEEPCNT")
    copy = pickle.loads(pickle.dumps(exc))
    assert str(copy) == str(exc) == "setsockopt(TCP_KEEPCNT): [Errno 9] Bad file descriptor"
    assert (copy.errno, copy.strerror, copy.call, copy.option) == (
        errno.EBADF,
        os.strerror(errno.EBADF),
        "setsockopt",
        "TCP_KEEPCNT",
    )
    assert isinstance(copy, OSError)

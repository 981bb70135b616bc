"""The fast call path behaves exactly like the general one, on real sockets.

The public functions take a fast path for plain ints inside an option's
range and the general path for everything else; these tests pin down that
both give the same values, the same errors and the same per-thread results.
No timing here: see benchmarks/bench.py for that.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import timedelta
from enum import IntEnum
from typing import Any, Callable, Dict, List, Tuple

import pytest

import netkeepalive
import netkeepalive._backends
import netkeepalive._libc
from netkeepalive import Settings, SocketOptionError, UnsupportedOptionError
from netkeepalive._backends.unix import UnixBackend
from netkeepalive.constants import Unit, table_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux ranges")

SETTERS: Dict[str, Tuple[Callable[..., bool], Callable[[Any], int]]] = {
    "idle": (netkeepalive.set_keepalive_idle, netkeepalive.get_keepalive_idle),
    "interval": (netkeepalive.set_keepalive_interval, netkeepalive.get_keepalive_interval),
    "probes": (netkeepalive.set_keepalive_probes, netkeepalive.get_keepalive_probes),
    "user_timeout": (netkeepalive.set_user_timeout, netkeepalive.get_user_timeout),
}
STDLIB_OPTION = {
    "idle": (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", 4)),
    "interval": (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", 5)),
    "probes": (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", 6)),
    "user_timeout": (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18)),
}


class Small(IntEnum):
    THREE = 3


# -- import ------------------------------------------------------------------

_IMPORT_PROBE = r"""
import ctypes, json, socket, sys
events = []
def hook(event, args):
    if event.startswith(("ctypes.dlopen", "subprocess.", "os.posix_spawn", "os.fork",
                         "os.exec", "os.system", "os.spawn")):
        events.append(event)
sys.addaudithook(hook)
before = set(sys.modules)
import netkeepalive
added = sorted(set(sys.modules) - before)
import netkeepalive._libc
print(json.dumps({"events": events, "added": added,
                  "lib_is_none": netkeepalive._libc._lib is None}))
"""


def test_import_loads_no_c_library_and_starts_no_process() -> None:
    # -S: only what ``import netkeepalive`` itself does is seen, not site hooks.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run(
        [sys.executable, "-S", "-c", _IMPORT_PROBE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    result = json.loads(out)
    assert result["events"] == []
    assert result["lib_is_none"] is True
    assert "netkeepalive" in result["added"]  # the probe did import it
    assert "subprocess" not in result["added"]
    assert "ctypes.util" not in result["added"]


# -- values: fast and general path agree ----------------------------------------


@LINUX_ONLY
@pytest.mark.parametrize(
    ("knob", "value", "expected"),
    [
        ("idle", 1000, 1000),  # lowest of the fast range
        ("idle", 1999, 1000),  # truncated to whole seconds
        ("idle", 32767 * 1000 + 999, 32767 * 1000),  # highest of the fast range
        ("idle", 2500.0, 2000),  # float: general path
        ("idle", timedelta(seconds=3, milliseconds=700), 3000),
        ("interval", 1000, 1000),
        ("interval", Small.THREE * 1000, 3000),
        ("probes", 1, 1),
        ("probes", 127, 127),
        ("probes", Small.THREE, 3),  # int subclass: general path
        ("user_timeout", 0, 0),
        ("user_timeout", 1, 1),
        ("user_timeout", 2**31 - 1, 2**31 - 1),
        ("user_timeout", timedelta(milliseconds=250), 250),
    ],
)
def test_setter_value_reaches_the_kernel(
    client: socket.socket, knob: str, value: object, expected: int
) -> None:
    set_, get = SETTERS[knob]
    get(client)  # the first call of a backend builds the fast path
    assert set_(client, value) is True
    assert get(client) == expected
    level, number = STDLIB_OPTION[knob]
    native = expected // 1000 if knob in ("idle", "interval") else expected
    assert client.getsockopt(level, number) == native


@LINUX_ONLY
@pytest.mark.parametrize(
    ("knob", "value", "exc", "words"),
    [
        ("idle", 999, ValueError, "less than one second"),
        ("idle", 0, ValueError, "out of range"),
        ("idle", -1000, ValueError, "negative"),
        ("idle", 32768 * 1000, ValueError, "out of range"),
        ("interval", 2**64, ValueError, "out of range"),
        ("probes", 0, ValueError, "out of range"),
        ("probes", 128, ValueError, "out of range"),
        ("probes", 2**32 + 4, ValueError, "out of range"),  # would wrap to 4 in a C int
        ("user_timeout", 2**31, ValueError, "out of range"),
        ("user_timeout", -1, ValueError, "negative"),
        ("idle", True, TypeError, "bool"),
        ("probes", True, TypeError, "bool"),
        ("probes", 2.0, TypeError, "int"),
        ("interval", "1000", TypeError, "str"),
        ("user_timeout", None, TypeError, "NoneType"),
    ],
)
def test_setter_refuses_without_touching_the_socket(
    client: socket.socket, knob: str, value: object, exc: type, words: str
) -> None:
    set_, get = SETTERS[knob]
    before = get(client)
    with pytest.raises(exc, match=words) as info:
        set_(client, value)
    assert str(info.value).startswith(f"{knob}:")
    assert get(client) == before


@pytest.mark.parametrize("sock_kind", ["socket", "int", "fileno_object"])
def test_every_descriptor_kind_takes_the_same_path(client: socket.socket, sock_kind: str) -> None:
    class HasFileno:
        def fileno(self) -> int:
            return client.fileno()

    target: object = {
        "socket": client,
        "int": client.fileno(),
        "fileno_object": HasFileno(),
    }[sock_kind]
    settings = netkeepalive.configure(target, idle=4000, interval=2000, probes=5)
    assert (settings.enabled, settings.idle, settings.interval, settings.probes) == (
        True,
        4000,
        2000,
        5,
    )
    assert netkeepalive.set_keepalive(target, False) is True
    assert netkeepalive.get_keepalive(target) is False
    assert netkeepalive.get_settings(client).enabled is False


def test_bad_descriptors_are_type_and_value_errors(client: socket.socket) -> None:
    with pytest.raises(TypeError):
        netkeepalive.set_keepalive_probes(object(), 3)
    with pytest.raises(TypeError):
        netkeepalive.get_keepalive_probes("3")
    with pytest.raises(ValueError, match=">= 0"):
        netkeepalive.get_keepalive_probes(-1)
    with pytest.raises(TypeError):
        netkeepalive.get_settings(None)
    with pytest.raises(TypeError):
        netkeepalive.set_keepalive(client, 1)  # an int is not a bool


def test_set_keepalive_initial_delay(client: socket.socket) -> None:
    assert netkeepalive.set_keepalive(client, True, 7000) is True
    assert netkeepalive.get_settings(client)[:2] == (True, 7000)
    # 0 leaves the idle time alone, in every spelling.
    for zero in (0, 0.0, timedelta(0)):
        netkeepalive.set_keepalive(client, True, zero)
        assert netkeepalive.get_keepalive_idle(client) == 7000
    with pytest.raises(ValueError, match=r"^initial_delay:"):
        netkeepalive.set_keepalive(client, False, 500)
    assert netkeepalive.get_keepalive(client) is True


def test_configure_validates_everything_first(client: socket.socket) -> None:
    before = netkeepalive.configure(client, idle=3000, interval=1000, probes=3, user_timeout=900)
    # The last option in apply order is bad: nothing may have changed.
    with pytest.raises(ValueError, match=r"^idle:"):
        netkeepalive.configure(client, idle=10, interval=2000, probes=4, user_timeout=800)
    with pytest.raises(TypeError, match=r"^enable:"):
        netkeepalive.configure(client, enable=1, probes=4)  # type: ignore[arg-type]
    assert netkeepalive.get_settings(client) == before
    after = netkeepalive.configure(client, enable=False, interval=2000.0)
    assert after == before._replace(enabled=False, interval=2000)


# -- kernel refusals ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "args", "c_name"),
    [
        (netkeepalive.set_keepalive_interval, (2000,), "setsockopt(TCP_KEEPINTVL)"),
        (netkeepalive.get_keepalive_interval, (), "getsockopt(TCP_KEEPINTVL)"),
        (netkeepalive.set_keepalive, (True,), "setsockopt(SO_KEEPALIVE)"),
        (netkeepalive.get_keepalive, (), "getsockopt(SO_KEEPALIVE)"),
        (netkeepalive.get_settings, (), "getsockopt(TCP_KEEPIDLE)"),
    ],
)
def test_closed_socket_is_ebadf_naming_call_and_option(
    call: Callable[..., object], args: Tuple[object, ...], c_name: str
) -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(SocketOptionError) as info:
        call(sock, *args)
    assert info.value.errno == errno.EBADF
    assert str(info.value) == f"{c_name}: [Errno {errno.EBADF}] {os.strerror(errno.EBADF)}"


def test_descriptor_that_is_not_a_socket_is_enotsock() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(SocketOptionError) as info:
            netkeepalive.set_keepalive_probes(read_end, 3)
        assert info.value.errno == errno.ENOTSOCK
        assert info.value.call == "setsockopt"
        with pytest.raises(SocketOptionError) as info:
            netkeepalive.get_user_timeout(read_end)
        assert info.value.errno == errno.ENOTSOCK
        assert info.value.call == "getsockopt"
    finally:
        os.close(read_end)
        os.close(write_end)


# -- backends change under the fast path -------------------------------------------


@pytest.mark.usefixtures("fresh_backend")
def test_reset_backend_is_picked_up(client: socket.socket) -> None:
    netkeepalive.set_keepalive_probes(client, 6)
    netkeepalive._backends.reset()
    netkeepalive._libc.reset()
    assert netkeepalive.get_keepalive_probes(client) == 6
    netkeepalive.set_keepalive_probes(client, 7)
    assert client.getsockopt(*STDLIB_OPTION["probes"]) == 7


@LINUX_ONLY
@pytest.mark.usefixtures("fresh_backend")
def test_backend_without_an_option_refuses_it(
    client: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    netkeepalive.set_user_timeout(client, 1234)  # builds the fast path for the real table
    lacking = UnixBackend(replace(table_for(), user_timeout=None))
    monkeypatch.setattr(netkeepalive._backends, "_current", lacking)
    with pytest.raises(UnsupportedOptionError):
        netkeepalive.set_user_timeout(client, 1000)
    with pytest.raises(UnsupportedOptionError):
        netkeepalive.get_user_timeout(client)
    with pytest.raises(UnsupportedOptionError):  # before anything is set
        netkeepalive.configure(client, probes=9, user_timeout=1000)
    settings = netkeepalive.configure(client, probes=9)
    assert settings.user_timeout is None
    assert settings.probes == 9
    assert client.getsockopt(*STDLIB_OPTION["user_timeout"]) == 1234


@LINUX_ONLY
@pytest.mark.usefixtures("fresh_backend")
@pytest.mark.parametrize(
    ("value", "native"),
    [(0, 0), (999, None), (1000, 1), (2500, 2), (2.5e3, 2), (-1000, None), (True, None)],
)
def test_seconds_option_that_takes_zero(
    client: socket.socket, monkeypatch: pytest.MonkeyPatch, value: object, native: object
) -> None:
    """A seconds option whose range starts at 0 (macOS's TCP_RXT_CONNDROPTIME).

    The table is changed so that TCP_USER_TIMEOUT is declared in seconds;
    the kernel then holds the native number, which shows what was passed.
    """
    table = table_for()
    assert table.user_timeout is not None
    seconds = replace(table.user_timeout, unit=Unit.SECONDS, minimum=0, maximum=1000)
    monkeypatch.setattr(
        netkeepalive._backends, "_current", UnixBackend(replace(table, user_timeout=seconds))
    )
    level, number = STDLIB_OPTION["user_timeout"]
    client.setsockopt(level, number, 777)
    assert netkeepalive.get_user_timeout(client) == 777_000  # the fast path is built now
    if native is None:
        with pytest.raises((ValueError, TypeError)):
            netkeepalive.set_user_timeout(client, value)
        assert client.getsockopt(level, number) == 777
    else:
        assert netkeepalive.set_user_timeout(client, value) is True
        assert client.getsockopt(level, number) == native
        assert netkeepalive.get_user_timeout(client) == native * 1000  # type: ignore[operator]
    with pytest.raises(ValueError, match="out of range"):
        netkeepalive.set_user_timeout(client, 1001 * 1000)


@pytest.mark.usefixtures("fresh_backend")
def test_missing_c_library_is_raised_after_validation(client: socket.socket, mocker: Any) -> None:
    mocker.patch.object(netkeepalive._libc, "_find_library", return_value=None)
    mocker.patch.object(netkeepalive._libc, "_open", side_effect=OSError("not here"))
    with pytest.raises(TypeError):
        netkeepalive.set_keepalive_interval(client, "2000")
    with pytest.raises(netkeepalive.LibraryNotFoundError):
        netkeepalive.set_keepalive_interval(client, 2000)
    with pytest.raises(netkeepalive.LibraryNotFoundError):
        netkeepalive.get_settings(client)


@pytest.mark.usefixtures("fresh_backend")
def test_injected_library_refusal_reports_its_errno(
    client: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that is not a ctypes.CDLL (as tests inject) still gets errno right."""

    class Refusing:
        def __init__(self) -> None:
            self.calls: List[str] = []

        def setsockopt(self, *args: object) -> int:
            self.calls.append("set")
            ctypes.set_errno(errno.ENOPROTOOPT)
            return -1

        def getsockopt(self, *args: object) -> int:
            self.calls.append("get")
            ctypes.set_errno(errno.EINVAL)
            return -1

    lib = Refusing()
    monkeypatch.setattr(netkeepalive._backends, "_current", UnixBackend(table_for(), lib=lib))
    with pytest.raises(SocketOptionError) as info:
        netkeepalive.set_keepalive_probes(client, 3)
    assert info.value.errno == errno.ENOPROTOOPT
    with pytest.raises(SocketOptionError) as info:
        netkeepalive.get_keepalive_probes(client)
    assert info.value.errno == errno.EINVAL
    assert "set" in lib.calls
    assert "get" in lib.calls


# -- threads ---------------------------------------------------------------------


def test_threads_each_read_back_their_own_values() -> None:
    """Many threads, one socket each, different values: no buffer is shared."""
    n_threads, rounds = 8, 300
    errors: List[BaseException] = []
    barrier = threading.Barrier(n_threads, timeout=30)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        pairs = []
        for _ in range(n_threads):
            c = socket.create_connection(listener.getsockname())
            s, _ = listener.accept()
            pairs.append((c, s))

        def work(index: int, sock: socket.socket) -> None:
            try:
                barrier.wait()
                for i in range(rounds):
                    probes = 1 + (index * 13 + i) % 127
                    idle = (1 + index) * 1000 + (i % 5) * 1000
                    timeout = index * 100_000 + i
                    netkeepalive.set_keepalive_probes(sock, probes)
                    netkeepalive.set_keepalive_idle(sock, idle)
                    netkeepalive.set_user_timeout(sock, timeout)
                    assert netkeepalive.get_keepalive_probes(sock) == probes
                    assert netkeepalive.get_keepalive_idle(sock) == idle
                    assert netkeepalive.get_user_timeout(sock) == timeout
                    got = netkeepalive.configure(sock, interval=1000 * (index + 1), probes=probes)
                    assert got == Settings(True, idle, 1000 * (index + 1), probes, timeout)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i, pairs[i][0])) for i in range(n_threads)]
        # Switch threads as often as the interpreter can, so that a buffer
        # shared between threads would be overwritten between a C call and
        # the read of its result.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads)
        finally:
            sys.setswitchinterval(interval)
            for c, s in pairs:
                c.close()
                s.close()
    assert errors == []


# -- Settings --------------------------------------------------------------------


def test_settings_is_a_named_tuple(client: socket.socket) -> None:
    got = netkeepalive.configure(client, idle=2000, interval=1000, probes=3, user_timeout=0)
    assert type(got) is Settings
    assert got == (True, 2000, 1000, 3, 0)
    assert Settings._fields == ("enabled", "idle", "interval", "probes", "user_timeout")
    assert got._asdict()["probes"] == 3
    assert type(got._replace(probes=4)) is Settings
    assert got.detection_time == 2000 + 1000 * 3
    assert got._replace(enabled=False).detection_time is None
    assert repr(got) == (
        "Settings(enabled=True, idle=2000, interval=1000, probes=3, user_timeout=0)"
    )
    assert pickle.loads(pickle.dumps(got)) == got
    with pytest.raises(AttributeError):
        got.probes = 5  # type: ignore[misc]


def test_milliseconds_alias_is_still_importable() -> None:
    from typing import Union

    from netkeepalive._convert import Milliseconds

    assert Milliseconds == Union[int, float, timedelta]


@LINUX_ONLY
@pytest.mark.usefixtures("fresh_backend")
def test_a_free_threaded_build_takes_the_general_path(
    client: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a GIL the fast getters' shared buffer would race: no fast path then.

    A free-threaded interpreter cannot be had here; its one difference that
    matters, ``sys._is_gil_enabled()`` answering false, is.
    """
    from netkeepalive._access import General, accessors

    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    monkeypatch.setattr(netkeepalive._backends, "_current", UnixBackend(table_for()))
    assert netkeepalive.set_keepalive_probes(client, 6) is True
    assert netkeepalive.set_keepalive_probes(client, 6) is True
    assert netkeepalive.get_keepalive_probes(client) == 6
    assert netkeepalive.get_settings(client).probes == 6
    assert client.getsockopt(*STDLIB_OPTION["probes"]) == 6
    assert not accessors.complete
    assert type(accessors.probes) is General

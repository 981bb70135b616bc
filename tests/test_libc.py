"""The C library loader: lazy, once, thread-safe, and clear when it fails.

The success paths load the real C library; mocks stand in only for what
cannot happen on this machine (no C library found, an injected errno).
"""

from __future__ import annotations

import ctypes
import errno
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from pytest_mock import MockerFixture

import netkeepalive as nk
from netkeepalive import _libc
from netkeepalive._backends.unix import UnixBackend
from netkeepalive.constants import LINUX
from netkeepalive.errors import LibraryNotFoundError

pytestmark = [
    pytest.mark.usefixtures("fresh_backend"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux C library"),
]


def test_import_loads_nothing() -> None:
    """``import netkeepalive`` neither loads libc nor runs find_library's helpers."""
    code = textwrap.dedent(
        """
        import sys
        import netkeepalive, netkeepalive._libc as L
        assert L._lib is None, "libc loaded at import"
        assert "ctypes.util" not in sys.modules, "ctypes.util imported"
        assert "subprocess" not in sys.modules, "subprocess imported"
        import socket
        s = socket.socket()
        netkeepalive.get_keepalive(s)
        assert L._lib is not None
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_loaded_once_across_threads(mocker: MockerFixture) -> None:
    find = mocker.spy(_libc, "_find_library")
    results: list[object] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        results.append(_libc.libc())

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert all(r is results[0] for r in results)
    assert find.call_count == 1
    assert hasattr(results[0], "setsockopt")


def test_falls_back_to_interpreter_symbols(mocker: MockerFixture, client: socket.socket) -> None:
    """musl-style: find_library finds nothing, CDLL(None) still has setsockopt."""
    mocker.patch.object(_libc, "_find_library", return_value=None)
    lib = _libc.libc()
    assert lib._name is None
    nk.set_keepalive_probes(client, 4)
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4


def test_falls_back_to_well_known_names(mocker: MockerFixture) -> None:
    real_open = _libc._open

    def no_symbols(name: str | None) -> ctypes.CDLL:
        if name is None:
            raise OSError("no symbols in this interpreter")
        return real_open(name)

    mocker.patch.object(_libc, "_find_library", return_value=None)
    mocker.patch.object(_libc, "_open", side_effect=no_symbols)
    assert _libc.libc()._name == "libc.so.6"


def test_nothing_found_says_what_was_tried(mocker: MockerFixture, client: socket.socket) -> None:
    mocker.patch.object(_libc, "_find_library", return_value=None)
    opener = mocker.patch.object(_libc, "_open", side_effect=OSError("cannot open"))
    with pytest.raises(LibraryNotFoundError) as info:
        nk.get_keepalive(client)
    message = str(info.value)
    assert "find_library('c'): nothing found" in message
    assert "CDLL(None)" in message
    for name in _libc.WELL_KNOWN_NAMES:
        assert repr(name) in message
    assert isinstance(info.value, OSError)
    # The failure is remembered: the search is not repeated on every call.
    tries = opener.call_count
    with pytest.raises(LibraryNotFoundError):
        nk.set_keepalive_interval(client, 1000)
    assert opener.call_count == tries


class InjectingLib:
    """A C library whose calls fail with a chosen errno, as the real one would."""

    def __init__(self, err: int) -> None:
        self.err = err

    def setsockopt(self, *args: object) -> int:
        ctypes.set_errno(self.err)
        return -1

    getsockopt = setsockopt


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOMEM, errno.EINTR, errno.ENOBUFS])
def test_injected_errno_becomes_oserror(err: int, client: socket.socket) -> None:
    backend = UnixBackend(LINUX, InjectingLib(err))
    assert LINUX.probes is not None
    with pytest.raises(nk.SocketOptionError) as info:
        backend.set(client.fileno(), LINUX.probes, 3)
    assert info.value.errno == err
    assert str(info.value).startswith(f"setsockopt(TCP_KEEPCNT): [Errno {err}] ")
    with pytest.raises(nk.SocketOptionError) as info:
        backend.get(client.fileno(), LINUX.probes)
    assert str(info.value).startswith(f"getsockopt(TCP_KEEPCNT): [Errno {err}] ")


class ShortLib:
    """getsockopt that answers with *length* bytes, as some kernels do for flags."""

    def __init__(self, length: int, payload: bytes) -> None:
        self.length, self.payload = length, payload

    def setsockopt(self, *args: object) -> int:
        return 0

    def getsockopt(self, fd: int, level: int, opt: int, value: object, length: object) -> int:
        val = ctypes.cast(value, ctypes.POINTER(ctypes.c_char * 4)).contents
        ctypes.memmove(val, self.payload, len(self.payload))
        ctypes.cast(length, ctypes.POINTER(ctypes.c_uint32)).contents.value = self.length
        return 0


def test_one_byte_answer_is_decoded() -> None:
    assert LINUX.enable is not None
    backend = UnixBackend(LINUX, ShortLib(1, b"\x01"))
    assert backend.get(3, LINUX.enable) == 1


def test_odd_length_answer_is_an_error() -> None:
    assert LINUX.enable is not None
    backend = UnixBackend(LINUX, ShortLib(3, b"\x01\x00\x00"))
    with pytest.raises(OSError, match="returned 3 bytes") as info:
        backend.get(3, LINUX.enable)
    assert info.value.errno == errno.EINVAL

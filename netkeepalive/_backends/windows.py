"""Windows: ``ws2_32``'s ``setsockopt``/``getsockopt`` and ``WSAIoctl`` via ctypes.

A socket is a ``SOCKET`` (``UINT_PTR``, pointer-sized and unsigned), not a
descriptor, so every function gets explicit ``argtypes``.  Failures are
read with ``WSAGetLastError()`` and raised as
:class:`~netkeepalive.errors.SocketOptionError` with ``winerror`` set and
the matching ``errno`` where one exists.

Before Windows 10 1709 (build 16299) there is no ``TCP_KEEPIDLE`` or
``TCP_KEEPINTVL``: idle time and interval go through
``WSAIoctl(SIO_KEEPALIVE_VALS)`` with ``struct tcp_keepalive`` (three
``u_long``: onoff, keepalivetime, keepaliveinterval, in milliseconds).
That ioctl sets both times and turns keepalive on at once, and cannot be
read back, so this backend remembers, per socket handle, the last idle time
and interval it sent and fills in the other one from that (or Windows'
defaults, 2 h and 1 s).  The memory is bounded (:data:`MAX_REMEMBERED`
handles, least recently set dropped first) and only trusted while
keepalive stays on: every socket the ioctl was sent to has it on, so a
handle that reads ``SO_KEEPALIVE`` off was closed and reused by a new
socket (or had keepalive turned off since) and starts from the defaults
again.  Turning keepalive off through this backend forgets the handle.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
from collections import OrderedDict
from typing import Any, Optional, Tuple

from .._libc import ws2_32
from ..constants import SIO_KEEPALIVE_VALS, WINDOWS_BUILD_KEEPIDLE, Option, PlatformTable
from ..errors import SocketOptionError
from .base import INT_SIZE as _INT_SIZE
from .base import Backend, ThreadBuffers, decoding
from .base import pack_int as _pack_int

__all__ = ["WindowsBackend", "tcp_keepalive"]

#: ``SOCKET`` is ``UINT_PTR``.
SOCKET = ctypes.c_size_t
#: ``~0``: what ``fileno()`` of a closed socket (-1) means to Windows.
INVALID_SOCKET = (1 << (8 * ctypes.sizeof(SOCKET))) - 1
SOCKET_ERROR = -1
#: ``u_long`` and ``DWORD`` are 32 bits on Windows (``c_ulong`` is not, elsewhere).
U_LONG = ctypes.c_uint32
DWORD = ctypes.c_uint32

#: Windows' defaults (KeepAliveTime, KeepAliveInterval), in ms, sent for a
#: time not yet set on a socket through SIO_KEEPALIVE_VALS.
DEFAULT_IDLE_MS = 2 * 60 * 60 * 1000
DEFAULT_INTERVAL_MS = 1000
#: How many handles' SIO_KEEPALIVE_VALS times are remembered at most.
MAX_REMEMBERED = 4096


class tcp_keepalive(ctypes.Structure):
    """``struct tcp_keepalive`` from mstcpip.h: 12 bytes, times in ms."""

    _fields_ = [
        ("onoff", U_LONG),
        ("keepalivetime", U_LONG),
        ("keepaliveinterval", U_LONG),
    ]


#: Windows Sockets error codes and the errno names they stand for.
_WSA_ERRNO_NAMES = {
    10004: "EINTR",
    10009: "EBADF",
    10013: "EACCES",
    10014: "EFAULT",
    10022: "EINVAL",
    10024: "EMFILE",
    10035: "EWOULDBLOCK",
    10036: "EINPROGRESS",
    10038: "ENOTSOCK",
    10042: "ENOPROTOOPT",
    10043: "EPROTONOSUPPORT",
    10045: "EOPNOTSUPP",
    10050: "ENETDOWN",
    10054: "ECONNRESET",
    10057: "ENOTCONN",
    10058: "ESHUTDOWN",
}


def _errno_for(winerror: int) -> Optional[int]:
    """The running interpreter's errno for a Windows Sockets error, if any."""
    name = _WSA_ERRNO_NAMES.get(winerror)
    value = getattr(errno, name, None) if name else None
    return value if isinstance(value, int) else None


def _message(winerror: int, err: Optional[int]) -> str:
    format_error = getattr(ctypes, "FormatError", None)
    text = format_error(winerror).strip() if format_error is not None else ""
    if not text:
        text = os.strerror(err) if err is not None else "Windows Sockets error"
    return f"{text} (WinError {winerror})"


class _Buffers(ThreadBuffers):
    """Per-thread buffers: ctypes releases the GIL during each call.

    The getter's pair with the pointer types ws2_32's ``argtypes`` take,
    and the ``tcp_keepalive`` of ``SIO_KEEPALIVE_VALS``.
    """

    def __init__(self) -> None:
        super().__init__()
        array = self.pair.array
        self.value_ptr = ctypes.cast(ctypes.pointer(array), ctypes.POINTER(ctypes.c_char))
        self.length_ptr = ctypes.pointer(ctypes.c_int.from_buffer(array, _INT_SIZE))
        self.keepalive = tcp_keepalive()
        self.keepalive_ref = ctypes.byref(self.keepalive)
        self.returned = DWORD(0)
        self.returned_ptr = ctypes.pointer(self.returned)


class WindowsBackend(Backend):
    """``setsockopt``/``getsockopt``/``WSAIoctl`` from ``ws2_32`` (loaded lazily)."""

    wide_descriptors = True  # a SOCKET; _handle() checks its range

    def __init__(self, table: PlatformTable, lib: Any = None) -> None:
        super().__init__(table)
        self._lib = lib
        self._functions: Optional[Tuple[Any, Any, Any, Any]] = None
        self._tls = _Buffers()
        self._lock = threading.Lock()
        #: handle -> (idle ms, interval ms) last sent with SIO_KEEPALIVE_VALS,
        #: least recently set first.
        self._sent: OrderedDict[int, Tuple[int, int]] = OrderedDict()

    def _bind(self) -> Tuple[Any, Any, Any, Any]:
        functions = self._functions
        if functions is None:
            lib = self._lib if self._lib is not None else ws2_32()
            self._lib = lib
            char_p = ctypes.POINTER(ctypes.c_char)
            setsockopt, getsockopt = lib.setsockopt, lib.getsockopt
            setsockopt.argtypes = [SOCKET, ctypes.c_int, ctypes.c_int, char_p, ctypes.c_int]
            setsockopt.restype = ctypes.c_int
            getsockopt.argtypes = [
                SOCKET,
                ctypes.c_int,
                ctypes.c_int,
                char_p,
                ctypes.POINTER(ctypes.c_int),
            ]
            getsockopt.restype = ctypes.c_int
            ioctl = lib.WSAIoctl
            ioctl.argtypes = [
                SOCKET,
                DWORD,
                ctypes.c_void_p,
                DWORD,
                ctypes.c_void_p,
                DWORD,
                ctypes.POINTER(DWORD),
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            ioctl.restype = ctypes.c_int
            last_error = lib.WSAGetLastError
            last_error.argtypes = []
            last_error.restype = ctypes.c_int
            functions = self._functions = (setsockopt, getsockopt, ioctl, last_error)
        return functions

    def _error(self, call: str, name: str) -> SocketOptionError:
        code = int(self._bind()[3]())
        err = _errno_for(code)
        exc = SocketOptionError(err, _message(code, err))
        exc.call, exc.option = call, name
        exc.winerror = code  # type: ignore[attr-defined]  # only Windows' OSError declares it
        return exc

    def set(self, fd: int, opt: Option, value: int) -> None:
        """``setsockopt(s, level, option, (char *)&(int){value}, sizeof(int))``.

        Idle time and interval before build 16299:
        ``WSAIoctl(s, SIO_KEEPALIVE_VALS, &tcp_keepalive, 12, ...)``.
        """
        if opt.number == SIO_KEEPALIVE_VALS:
            self._set_keepalive_vals(_handle(fd), opt, value)
            return
        setsockopt = self._bind()[0]
        handle = _handle(fd)
        # 4 new bytes, shared with no other thread or signal handler; a
        # number no C int holds is an error, never wrapped.
        if setsockopt(handle, opt.level, opt.number, _pack_int(value), _INT_SIZE) != 0:
            raise self._error("setsockopt", opt.name)
        if opt.knob == "enable" and not value and self._sent:
            with self._lock:
                self._sent.pop(handle, None)

    def get(self, fd: int, opt: Option) -> int:
        """``getsockopt(s, level, option, (char *)&value, &len)``.

        A 1-byte answer (``SO_KEEPALIVE`` as a ``BOOLEAN``) is accepted;
        ``SIO_KEEPALIVE_VALS`` cannot be read back.
        """
        if not opt.readable:
            raise self._unreadable(
                opt,
                f"{opt.name} cannot be read back; reading it needs TCP_KEEPIDLE and "
                f"TCP_KEEPINTVL, Windows build {WINDOWS_BUILD_KEEPIDLE} and later",
            )
        buf = self._tls
        read = buf.read
        if read is None:
            read = buf.read = decoding(self._bind()[1], buf.pair)
        buf.pair.array[1] = _INT_SIZE
        try:
            value, length = read(_handle(fd), opt.level, opt.number, buf.value_ptr, buf.length_ptr)
        except struct.error:  # SOCKET_ERROR
            raise self._error("getsockopt", opt.name) from None
        if length == _INT_SIZE:
            return value
        if length == 1:
            return _pack_int(value)[0]  # the byte the call wrote, first in memory
        exc = SocketOptionError(
            errno.EINVAL, f"returned {length} bytes where an int takes {_INT_SIZE}"
        )
        exc.call, exc.option = "getsockopt", opt.name
        raise exc

    def _set_keepalive_vals(self, handle: int, opt: Option, value: int) -> None:
        ioctl = self._bind()[2]
        buf = self._tls
        with self._lock:
            remembered = self._sent.pop(handle, None)
            if remembered is not None and not self._keepalive_on(handle):
                remembered = None  # a reused handle, or keepalive turned off since
            idle, interval = remembered or (DEFAULT_IDLE_MS, DEFAULT_INTERVAL_MS)
            if opt.knob == "idle":
                idle = value
            else:
                interval = value
            ka = buf.keepalive
            ka.onoff, ka.keepalivetime, ka.keepaliveinterval = 1, idle, interval
            if (
                ioctl(
                    handle,
                    SIO_KEEPALIVE_VALS,
                    buf.keepalive_ref,
                    ctypes.sizeof(tcp_keepalive),
                    None,
                    0,
                    buf.returned_ptr,
                    None,
                    None,
                )
                != 0
            ):
                raise self._error("WSAIoctl", opt.name)
            self._sent[handle] = (idle, interval)
            while len(self._sent) > MAX_REMEMBERED:
                self._sent.popitem(last=False)

    def _keepalive_on(self, handle: int) -> bool:
        """``getsockopt(SO_KEEPALIVE)`` of *handle*; ``False`` if it cannot be read."""
        enable = self.table.enable
        if enable is None:
            return False
        try:
            return self.get(handle, enable) != 0
        except SocketOptionError:
            return False


def _handle(fd: int) -> int:
    """The ``SOCKET`` for *fd*; ``-1`` (a closed socket) is ``INVALID_SOCKET``."""
    if fd == -1:
        return INVALID_SOCKET
    if not 0 <= fd < INVALID_SOCKET:
        raise ValueError(f"{fd} is not a Windows SOCKET handle")
    return fd


def kernel_build() -> Optional[int]:
    """The build number the Windows kernel reports (``RtlGetVersion``), if any.

    Unlike ``GetVersionEx`` (behind ``sys.getwindowsversion()``), ntdll's
    ``RtlGetVersion`` is not subject to the application manifest, so a host
    program without a Windows 10 manifest cannot make it report an older
    build.  ``None`` where it cannot be called.
    """
    import ctypes

    windll = getattr(ctypes, "WinDLL", None)
    if windll is None:
        return None

    class OSVERSIONINFOW(ctypes.Structure):
        _fields_ = [
            ("dwOSVersionInfoSize", ctypes.c_uint32),
            ("dwMajorVersion", ctypes.c_uint32),
            ("dwMinorVersion", ctypes.c_uint32),
            ("dwBuildNumber", ctypes.c_uint32),
            ("dwPlatformId", ctypes.c_uint32),
            ("szCSDVersion", ctypes.c_wchar * 128),
        ]

    try:
        rtl_get_version = windll("ntdll").RtlGetVersion
        info = OSVERSIONINFOW()
        info.dwOSVersionInfoSize = ctypes.sizeof(info)
        if rtl_get_version(ctypes.byref(info)) != 0:  # an NTSTATUS other than success
            return None
    except (OSError, AttributeError):
        return None
    return int(info.dwBuildNumber)


def running_table() -> PlatformTable:
    """Windows' table for the build of the running kernel.

    ``RtlGetVersion`` first; ``sys.getwindowsversion()`` only where that
    cannot be called, since it reports an older build to programs without
    a Windows 10 manifest.
    """
    import sys

    from ..constants import windows_table

    build = kernel_build()
    if build is None:
        getwindowsversion = getattr(sys, "getwindowsversion", None)
        build = int(getwindowsversion().build) if getwindowsversion is not None else 0
    return windows_table(build)

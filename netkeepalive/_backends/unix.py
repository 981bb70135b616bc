"""Unix-like systems: the C library's ``setsockopt``/``getsockopt`` via ctypes.

This is the hot path (servers call it for every accepted connection), so
each call reuses per-thread ``c_int`` buffers and pre-built ``byref``
pointers, passes plain Python ints (no ``argtypes`` conversion layer), and
reads ``errno`` only when C returns ``-1``.  ``use_errno=True`` makes ctypes
keep a per-thread copy of ``errno``, so concurrent calls from many threads
never report each other's errors.
"""

from __future__ import annotations

import ctypes
import errno
import sys
import threading
from typing import Any, Callable, Optional, Tuple

from .._convert import range_text
from .._libc import libc
from ..constants import Option, PlatformTable, Unit
from ..errors import SocketOptionError
from .base import Backend

__all__ = ["FallbackUnixBackend", "UnixBackend"]

_INT_SIZE = ctypes.sizeof(ctypes.c_int)


class _Buffers(threading.local):
    """One ``int`` value and one ``socklen_t`` length per thread.

    ctypes releases the GIL during the C call, so a buffer shared between
    threads could be overwritten while the kernel reads it.
    """

    def __init__(self) -> None:
        self.value = ctypes.c_int(0)
        # socklen_t is a 32-bit unsigned int on every Unix-like system here.
        self.length = ctypes.c_uint32(0)
        self.value_ref = ctypes.byref(self.value)
        self.length_ref = ctypes.byref(self.length)
        # The getters' buffer: value and length side by side, written and
        # read through one memoryview (cheaper than c_int.value), with the
        # two pointers built once: (view, &value, &length).
        pair = (ctypes.c_int * 2)(0, _INT_SIZE)
        view = memoryview(pair).cast("B").cast("i")
        self.fast = (view, ctypes.byref(pair), ctypes.byref(pair, _INT_SIZE))


def _error(call: str, opt: Option) -> SocketOptionError:
    err = ctypes.get_errno()
    exc = SocketOptionError.from_errno(err, call, opt.name)
    if err == errno.EINVAL and opt.einval_hint and call == "setsockopt":
        # A bound only the running kernel knows (a tunable): say which.
        exc.strerror = f"{exc.strerror}; {opt.einval_hint}"
    return exc


class UnixBackend(Backend):
    """``setsockopt``/``getsockopt`` from the C library (loaded lazily)."""

    def __init__(self, table: PlatformTable, lib: Any = None) -> None:
        super().__init__(table)
        self._lib = lib
        self._tls = _Buffers()
        self._fast: Optional[Tuple[Callable[..., int], Callable[..., int], Any]] = None
        self._setsockopt: Callable[..., int] = self._bind_set
        self._getsockopt: Callable[..., int] = self._bind_get

    # The first call of each function loads the library and rebinds.
    def _bind(self) -> None:
        lib = self._lib if self._lib is not None else libc()
        self._lib = lib
        self._setsockopt = lib.setsockopt
        self._getsockopt = lib.getsockopt

    def _bind_set(self, *args: Any) -> int:
        self._bind()
        return self._setsockopt(*args)

    def _bind_get(self, *args: Any) -> int:
        self._bind()
        return self._getsockopt(*args)

    # The public API's fast path calls the same symbols with the GIL held,
    # as the standard library's socket.setsockopt does (these calls never
    # block), and without ctypes' errno copy: a call the kernel refuses (or a
    # value of an unexpected size) is handed to set()/get(), which repeat it,
    # read errno and own every error and fallback.  A refused setsockopt
    # changes nothing, so repeating it is harmless.
    def fast_functions(self) -> Optional[Tuple[Callable[..., int], Callable[..., int], Any]]:
        """``(setsockopt, getsockopt, buffers)``, built once per backend."""
        fast = self._fast
        if fast is None:
            self._bind()
            handle = getattr(self._lib, "_handle", None)
            if isinstance(self._lib, ctypes.CDLL) and isinstance(handle, int):
                held = ctypes.PyDLL(self._lib._name, handle=handle)
                fast = (held.setsockopt, held.getsockopt, self._tls)
                self.libc_calls = self._lib is libc()
            else:  # a stand-in library (tests): its own functions
                fast = (self._setsockopt, self._getsockopt, self._tls)
            self._fast = fast
        return fast

    def set(self, fd: int, opt: Option, value: int) -> None:
        """``setsockopt(fd, level, option, &(int){value}, sizeof(int))``."""
        buf = self._tls
        buf.value.value = value
        if self._setsockopt(fd, opt.level, opt.number, buf.value_ref, _INT_SIZE):
            raise _error("setsockopt", opt)

    def get(self, fd: int, opt: Option) -> int:
        """``getsockopt(fd, level, option, &value, &len)``, length checked.

        An option the kernel cannot report (:attr:`Option.readable`, NetBSD)
        raises :class:`UnsupportedOptionError` without a call.
        """
        if not opt.readable:
            raise self._unreadable(opt, f"the kernel does not answer getsockopt({opt.name})")
        buf = self._tls
        buf.length.value = _INT_SIZE
        if self._getsockopt(fd, opt.level, opt.number, buf.value_ref, buf.length_ref):
            raise _error("getsockopt", opt)
        if buf.length.value != _INT_SIZE:
            return _short_value(buf, opt)
        return buf.value.value


def _short_value(buf: _Buffers, opt: Option) -> int:
    """Decode a value the kernel returned in fewer bytes than an ``int``.

    Some systems answer boolean options with a single byte; anything else
    (zero bytes, an odd size) is an error, never a guess.
    """
    length = buf.length.value
    if length in (1, 2):
        raw = ctypes.string_at(ctypes.addressof(buf.value), length)
        return int.from_bytes(raw, sys.byteorder, signed=length != 1)
    exc = SocketOptionError(errno.EINVAL, f"returned {length} bytes where an int takes {_INT_SIZE}")
    exc.call, exc.option = "getsockopt", opt.name
    raise exc


# -- Option.fallback -------------------------------------------------------
# Kept out of UnixBackend.set/get: only tables with a fallback option (illumos)
# get this subclass, and it does extra work only after the kernel refused.

_MISSING_ERRNOS = (errno.ENOPROTOOPT, errno.EINVAL)


def _scale(native: int, src: Option, dst: Option) -> int:
    """*native* in *src*'s unit expressed in *dst*'s unit (seconds <-> ms)."""
    if src.unit is dst.unit:
        return native
    if src.unit is Unit.SECONDS and dst.unit is Unit.MILLISECONDS:
        return native * 1000
    if src.unit is Unit.MILLISECONDS and dst.unit is Unit.SECONDS:
        return native // 1000
    raise TypeError(f"cannot convert {src.name} ({src.unit.value}) to {dst.name}")


class FallbackUnixBackend(UnixBackend):
    """A :class:`UnixBackend` that honours :attr:`Option.fallback`.

    When the kernel refuses an option with ``ENOPROTOOPT``, or with
    ``EINVAL`` and ``getsockopt`` shows the option is unknown, the call is
    retried with the fallback option, the value converted to its unit and
    checked against its range (``ValueError`` naming the fallback).
    The public API's call path goes through :meth:`set`/:meth:`get` here,
    so a missing option costs one refused call, not two.
    """

    def fast_functions(self) -> Optional[Tuple[Callable[..., int], Callable[..., int], Any]]:
        """No fast path: every call goes through :meth:`set`/:meth:`get`."""
        return None

    def set(self, fd: int, opt: Option, value: int) -> None:
        """``setsockopt`` with *opt*, or with ``opt.fallback`` where *opt* is missing."""
        try:
            UnixBackend.set(self, fd, opt, value)
        except SocketOptionError as exc:
            fallback = opt.fallback
            if fallback is None or not self._missing(fd, opt, exc):
                raise
            native = _scale(value, opt, fallback)
            if not fallback.minimum <= native <= fallback.maximum:
                raise ValueError(
                    f"{opt.knob}: this system has no {opt.name}, and its fallback "
                    f"cannot take {native} {fallback.unit.value}; {range_text(fallback)}"
                ) from exc
            UnixBackend.set(self, fd, fallback, native)

    def get(self, fd: int, opt: Option) -> int:
        """``getsockopt`` of *opt* (or its fallback), in *opt*'s unit."""
        try:
            return UnixBackend.get(self, fd, opt)
        except SocketOptionError as exc:
            fallback = opt.fallback
            if fallback is None or exc.errno not in _MISSING_ERRNOS:
                raise
            return _scale(UnixBackend.get(self, fd, fallback), fallback, opt)

    def _missing(self, fd: int, opt: Option, exc: SocketOptionError) -> bool:
        """Whether the refusal *exc* means the kernel does not know *opt*."""
        if exc.errno == errno.ENOPROTOOPT:
            return True
        if exc.errno != errno.EINVAL:
            return False
        # EINVAL is also the answer to a bad value: ask whether the option
        # itself exists.
        try:
            UnixBackend.get(self, fd, opt)
        except SocketOptionError as probe:
            return probe.errno in _MISSING_ERRNOS
        return False


# -- illumos: TCP_KEEPINTVL within the connection's retransmit bounds ------


class RetransmitBoundsError(SocketOptionError, ValueError):
    """An illumos interval outside the connection's ``TCP_RTO_MIN..TCP_RTO_MAX``.

    Both an ``OSError`` (``EINVAL``, what the kernel would answer) and a
    ``ValueError`` (the value, not the call, is wrong); raised before the
    ``setsockopt`` it would fail, naming the bounds read from the socket.
    """


def _ms_text(ms: int) -> str:
    return f"{ms // 1000} s" if ms % 1000 == 0 else f"{ms} ms"


class IllumosBackend(FallbackUnixBackend):
    """illumos: reads the socket's retransmit bounds before writing ``TCP_KEEPINTVL``.

    usr/src/uts/common/inet/tcp/tcp_opt_data.c tcp_opt_set refuses an
    interval whose x 1000 lies outside the connection's tcp_rto_min ..
    tcp_rto_max, and tcp_opt_get answers both as ``TCP_RTO_MIN`` and
    ``TCP_RTO_MAX`` (ms).  Where they cannot be read, the kernel decides
    and its ``EINVAL`` names the tunables (:attr:`Option.einval_hint`).
    """

    def set(self, fd: int, opt: Option, value: int) -> None:
        """``setsockopt``, after checking an interval against the socket's bounds."""
        if opt.knob == "interval" and opt.unit is Unit.SECONDS:
            bounds = self._rto_bounds(fd)
            if bounds is not None and not bounds[0] <= value * 1000 <= bounds[1]:
                lo, hi = bounds
                exc = RetransmitBoundsError(
                    errno.EINVAL,
                    f"{value} s is outside this connection's retransmit bounds "
                    f"TCP_RTO_MIN..TCP_RTO_MAX, {_ms_text(lo)} to {_ms_text(hi)}: illumos "
                    f"takes {opt.name} from {-(-lo // 1000)} to {hi // 1000} whole seconds "
                    f"here (the tcp tunables _rexmit_interval_min/_max set the defaults)",
                )
                exc.call, exc.option = "setsockopt", opt.name
                raise exc
        FallbackUnixBackend.set(self, fd, opt, value)

    def _rto_bounds(self, fd: int) -> Optional[Tuple[int, int]]:
        from ..constants import ILLUMOS_TCP_RTO_MAX, ILLUMOS_TCP_RTO_MIN, IPPROTO_TCP, UINT_MAX

        values = []
        for name, number in (
            ("TCP_RTO_MIN", ILLUMOS_TCP_RTO_MIN),
            ("TCP_RTO_MAX", ILLUMOS_TCP_RTO_MAX),
        ):
            bound = Option("", IPPROTO_TCP, name, number, Unit.MILLISECONDS, 0, UINT_MAX)
            try:
                values.append(UnixBackend.get(self, fd, bound) & UINT_MAX)
            except SocketOptionError:
                return None
        return values[0], values[1]

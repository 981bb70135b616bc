"""Unix-like systems: the C library's ``setsockopt``/``getsockopt`` via ctypes.

This is the hot path (servers call it for every accepted connection), so
each call passes plain Python ints (no ``argtypes`` conversion layer), the
value to write as 4 ready bytes, a per-thread getter buffer with pointers
built once, and reads ``errno`` only when C returns ``-1``.
``use_errno=True`` makes ctypes keep a per-thread copy of ``errno``, so
concurrent calls from many threads never report each other's errors.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from .._convert import range_text
from .._libc import libc
from ..constants import Option, PlatformTable, Unit
from ..errors import SocketOptionError
from .base import INT_SIZE as _INT_SIZE
from .base import Backend, Pair, ThreadBuffers, decoding, has_gil
from .base import pack_int as _pack_int

if TYPE_CHECKING:
    from .base import FastFunctions

__all__ = ["FallbackUnixBackend", "UnixBackend"]


_get_errno, _set_errno = ctypes.get_errno, ctypes.set_errno


def _error(call: str, opt: Option, before: int) -> SocketOptionError:
    """The error of the refused *call*, from this thread's ``errno`` copy.

    The copy is then put back to *before*, what it held before the call:
    a signal handler that runs between another refused call of this thread
    and its reading of ``errno`` (Python runs handlers between two
    instructions) leaves that ``errno`` as it found it.
    """
    err = _get_errno()
    _set_errno(before)
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
        self._tls = ThreadBuffers()
        self._fast: Optional[FastFunctions] = None
        self._setsockopt: Callable[..., int] = self._bind_set

    # The first call loads the library and rebinds.
    def _bind(self) -> Any:
        lib = self._lib if self._lib is not None else libc()
        self._lib = lib
        self._setsockopt = lib.setsockopt
        return lib

    def _bind_set(self, *args: Any) -> int:
        self._bind()
        return self._setsockopt(*args)

    # The public API's fast path calls the same symbols with the GIL held,
    # as the standard library's socket.setsockopt does (these calls never
    # block), and without ctypes' errno copy: a call the kernel refuses (or a
    # value of an unexpected size) is handed to set()/get(), which repeat it,
    # read errno and own every error and fallback.  A refused setsockopt
    # changes nothing, so repeating it is harmless.  Holding the GIL, the
    # getters of every thread share one buffer: no other thread runs between
    # the kernel's answer and its reading (see base.decoding).

    def fast_functions(self) -> Optional[FastFunctions]:
        """``(setsockopt, getsockopt, pair)``, built once per backend."""
        fast = self._fast
        if fast is None:
            if not has_gil():
                return None  # a free-threaded build: every call takes set()/get()
            lib = self._bind()
            handle = getattr(lib, "_handle", None)
            pair = Pair()
            if isinstance(lib, ctypes.CDLL) and isinstance(handle, int):
                held = ctypes.PyDLL(lib._name, handle=handle)
                fast = (held.setsockopt, decoding(held.getsockopt, pair), pair)
                self.libc_calls = lib is libc()
            else:  # a stand-in library (tests): its own functions
                fast = (lib.setsockopt, decoding(lib.getsockopt, pair), pair)
            self._fast = fast
        return fast

    def set(self, fd: int, opt: Option, value: int) -> None:
        """``setsockopt(fd, level, option, &(int){value}, sizeof(int))``.

        The value goes as 4 new bytes, shared with nothing: neither another
        thread nor a signal handler can change it before the kernel reads
        it, and a number no C ``int`` holds is an error, never wrapped.
        """
        before = _get_errno()
        if self._setsockopt(fd, opt.level, opt.number, _pack_int(value), _INT_SIZE):
            raise _error("setsockopt", opt, before)

    def get(self, fd: int, opt: Option) -> int:
        """``getsockopt(fd, level, option, &value, &len)``, length checked.

        An option the kernel cannot report (:attr:`Option.readable`, NetBSD)
        raises :class:`UnsupportedOptionError` without a call.
        """
        if not opt.readable:
            raise self._unreadable(opt, f"the kernel does not answer getsockopt({opt.name})")
        buf = self._tls
        read = buf.read
        if read is None:
            read = buf.read = decoding(self._bind().getsockopt, buf.pair)
        pair = buf.pair
        pair.array[1] = _INT_SIZE
        before = _get_errno()
        try:
            value, length = read(fd, opt.level, opt.number, pair.value_ref, pair.length_ref)
        except struct.error:  # C returned -1
            raise _error("getsockopt", opt, before) from None
        if length != _INT_SIZE:
            return _short_value(value, length, opt)
        return value


def _short_value(value: int, length: int, opt: Option) -> int:
    """Decode a value the kernel returned in fewer bytes than an ``int``.

    *value* is the buffer's 4 bytes read as an ``int``: its first *length*
    bytes are the ones the kernel wrote.  Some systems answer boolean
    options with a single byte; anything else (zero bytes, an odd size) is
    an error, never a guess.
    """
    if length in (1, 2):
        raw = _pack_int(value)[:length]
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

    def fast_functions(self) -> Optional[FastFunctions]:
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

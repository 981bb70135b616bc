"""Layer 4: the public API, in the public units (milliseconds and counts).

Each setter validates its value, converts it to the unit the running
kernel takes (see :mod:`netkeepalive.constants`), calls ``setsockopt``
through the platform backend and returns ``True``, as Node's
net-keepalive does.  Each getter calls ``getsockopt`` and converts back.
"""

from __future__ import annotations

import socket
import struct

from . import _atomic
from . import _backends as _sys
from ._common import VALUE_KNOBS as _VALUE_KNOBS
from ._convert import check_enable as _check_enable
from ._convert import from_native, ms_per_unit, plan, to_native
from ._convert import public_value as _public
from ._fd import fileno
from ._settings import Settings
from .errors import LibraryNotFoundError, UnsupportedOptionError

# ``typing`` (with ``re``), ``datetime`` and the option tables are not
# imported at run time: ``import netkeepalive`` stays cheap, and the tables
# load with the backend on the first call.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple, TypeGuard

    from ._backends.base import Backend
    from ._convert import Milliseconds
    from .constants import Option

__all__ = [
    "Settings",
    "configure",
    "get_keepalive",
    "get_keepalive_idle",
    "get_keepalive_interval",
    "get_keepalive_probes",
    "get_settings",
    "get_user_timeout",
    "set_keepalive",
    "set_keepalive_idle",
    "set_keepalive_interval",
    "set_keepalive_probes",
    "set_user_timeout",
]

#: The order :func:`configure` applies options in: the one a kernel is most
#: likely to lack first, so a refusal tends to come before anything has
#: changed; then ``SO_KEEPALIVE``.  When keepalive is being enabled the idle
#: time is written once more after ``SO_KEEPALIVE=1``: on macOS a
#: ``TCP_KEEPALIVE`` written while keepalive is off leaves the running
#: timer at the system's 2 hours (xnu bsd/netinet/tcp_timer.h
#: ``TCP_CONN_KEEPIDLE``), and turning keepalive on re-arms nothing.  The
#: first write makes a refusal come before ``SO_KEEPALIVE`` has changed.
_APPLY_ORDER = ("user_timeout", "probes", "interval", "idle")


def _is_zero(value: object) -> bool:
    if type(value) is int or type(value) is float:
        return value == 0
    if isinstance(value, (int, float)):  # an IntEnum 0 is 0 too; a bool is no time
        return not isinstance(value, bool) and value == 0
    from datetime import timedelta  # loaded only for values that may be one

    return isinstance(value, timedelta) and not value


# -- the fast path -----------------------------------------------------------
#
# A server may call these for every connection it accepts.  Each public
# function first tries a fast path that handles the common call (a
# ``socket.socket`` or descriptor, a plain ``int`` inside the option's range)
# with everything that does not depend on the call worked out once per
# backend in a :class:`_Fast` record per option; any other call takes the
# general path below it (``_set``/``_get``/...), which validates and raises
# exactly as before.  The fast path is taken only when its checks prove the
# general path would do the same: same kernel calls, same values, same
# errors.  A call the kernel refuses is handed to the backend's ``set``/
# ``get``, which repeat it, read ``errno`` and own every error.

_socket_type = socket.socket
_socket_fileno = socket.socket.fileno
_tuple_new = tuple.__new__
_pack_int = struct.Struct("=i").pack
_INT_SIZE = 4


#: Stands where a backend would when a fast path must not be taken.
_NEVER = object()


class _Fast:
    """One option's fast path, for the backend it was built for.

    ``backend`` is that backend, or ``None`` where there is no fast path
    (the platform lacks the option, its backend has no raw C functions, or
    the C library failed to load); the fast path is taken only while it is
    ``_sys._current``.  ``c_set``/``c_get`` are ``setsockopt``/``getsockopt``
    with the C signature, ``buffers`` the backend's per-thread getter buffer,
    ``retry_set``/``retry_get`` the backend's ``set``/``get`` for a refusal.
    Plain ints in ``lo..hi`` (public unit) are valid, and
    ``native = value // scale``, ``public = native * scale``.
    """

    __slots__ = (
        "backend",
        "buffers",
        "c_get",
        "c_set",
        "hi",
        "level",
        "lo",
        "number",
        "opt",
        "retry_get",
        "retry_set",
        "scale"
    )  # fmt: skip

    if TYPE_CHECKING:
        backend: Any
        c_set: Callable[..., int]
        c_get: Callable[..., int]
        buffers: Any
        retry_set: Callable[[int, Option, int], None]
        retry_get: Callable[[int, Option], int]
        level: int
        number: int
        opt: Option
        lo: int
        hi: int
        scale: int

    def __init__(self, backend: Any = None, opt: Any = None, span: Any = (0, -1, 1)) -> None:
        # No record matches _sys._current when there is no backend, not even
        # before the first one exists (None).
        self.backend = _NEVER if backend is None else backend
        self.opt = opt
        self.lo, self.hi, self.scale = span
        if backend is not None:
            self.c_set, self.c_get, self.buffers = backend.fast_functions()
            self.retry_set, self.retry_get = backend.set, backend.get
            self.level, self.number = opt.level, opt.number


_NO_FAST = _Fast()
_enable = _idle = _interval = _probes = _user_timeout = _NO_FAST
#: The backend get_settings/configure may take the fast path for: every
#: option has one and can be read back.
_all_for: object = _NEVER
_built_for: object = _NEVER


def _span(opt: Option) -> Optional[Tuple[int, int, int]]:
    """(lo, hi, scale): the plain ints to_native takes for *opt*, and their scaling."""
    from .constants import Unit

    if opt.unit in (Unit.SECONDS, Unit.HALF_SECONDS):
        # Times under one unit (1..999 ms for seconds) truncate to 0, which
        # to_native refuses for a non-zero time: those take the general path.
        grain = ms_per_unit(opt)
        return max(opt.minimum, 1) * grain, opt.maximum * grain + grain - 1, grain
    if opt.unit is Unit.MILLISECONDS:
        return max(opt.minimum, 0), opt.maximum, 1  # negative: refused
    if opt.unit in (Unit.COUNT, Unit.FLAG):
        return opt.minimum, opt.maximum, 1
    return None  # no fast path for a unit this code does not know


def _build(backend: Backend) -> None:
    """Build the fast-path records for *backend* (loads the C library)."""
    global _enable, _idle, _interval, _probes, _user_timeout, _all_for, _built_for
    records = {}
    complete = backend.fast_functions() is not None
    for knob in ("enable", *_VALUE_KNOBS):
        opt = backend.table.option(knob)
        span = None if opt is None or opt.fallback is not None or not complete else _span(opt)
        if opt is None or span is None or not opt.readable or opt.zero_is_unset:
            records[knob] = _NO_FAST
            complete = False
        else:
            records[knob] = _Fast(backend, opt, span)
    _enable, _idle, _interval = records["enable"], records["idle"], records["interval"]
    _probes, _user_timeout = records["probes"], records["user_timeout"]
    _all_for = backend if complete else _NEVER
    _built_for = backend


def _backend() -> Backend:
    """``_sys.backend()``, with the fast paths rebuilt when it changed."""
    global _enable, _idle, _interval, _probes, _user_timeout, _all_for, _built_for
    backend = _sys.backend()
    if _built_for is not backend:
        try:
            _build(backend)
        except LibraryNotFoundError:
            # Every call stays on the general path, which validates its
            # arguments first and then raises this when it reaches C.
            _enable = _idle = _interval = _probes = _user_timeout = _NO_FAST
            _all_for = _built_for = _NEVER
    return backend


def _put(f: _Fast, fd: int, native: int) -> None:
    """``setsockopt`` of *f*'s option; a refusal goes to the backend's ``set``."""
    if f.c_set(fd, f.level, f.number, _pack_int(native), _INT_SIZE):
        f.retry_set(fd, f.opt, native)


def _read(f: _Fast, fd: int) -> int:
    """``getsockopt`` of *f*'s option, in the public unit.

    The length starts at sizeof(int) and is put back whenever a call leaves
    it otherwise; a refusal, or any other length, goes to the backend's
    ``get``, which raises or decodes.
    """
    view, value_ref, length_ref = f.buffers.fast
    if f.c_get(fd, f.level, f.number, value_ref, length_ref) or view[1] != _INT_SIZE:
        view[1] = _INT_SIZE
        return f.retry_get(fd, f.opt) * f.scale
    value: int = view[0]
    return value * f.scale


def _fast_set(f: _Fast, sock: Any, value: object) -> bool:
    """Set *value* through *f* if the fast path applies; ``False`` if it does not."""
    if f.backend is _sys._current and type(value) is int and f.lo <= value <= f.hi:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        native = value // f.scale
        if f.c_set(fd, f.level, f.number, _pack_int(native), _INT_SIZE):
            f.retry_set(fd, f.opt, native)
        return True
    return False


# -- the general path --------------------------------------------------------


def _set(knob: str, sock: Any, value: object) -> bool:
    backend = _backend()
    opt = backend.option(knob)
    fd = fileno(sock)
    backend.set(fd, opt, to_native(opt, value, knob))
    return True


def _get(knob: str, sock: Any) -> int:
    backend = _backend()
    opt = backend.option(knob)
    return from_native(opt, backend.get(fileno(sock), opt))


def _get_or_unset(knob: str, sock: Any) -> Optional[int]:
    """:func:`_get`, with ``None`` where the kernel's 0 means "never set"."""
    backend = _backend()
    opt = backend.option(knob)
    return _public(opt, backend.get(fileno(sock), opt))


def _set_keepalive(sock: Any, enable: object, initial_delay: object) -> bool:
    backend = _backend()
    _check_enable(enable)
    fd = fileno(sock)
    enable_opt = backend.option("enable")
    if _is_zero(initial_delay):
        delay = None
    else:  # validated even when disabling, so a bad value never passes silently
        idle = backend.option("idle")
        delay = (idle, to_native(idle, initial_delay, "initial_delay"))
    if enable and delay is not None:
        # Idle first, so a refusal tends to come before SO_KEEPALIVE changes;
        # again after SO_KEEPALIVE=1: see _APPLY_ORDER.  All or nothing.
        _atomic.apply(backend, fd, (delay, (enable_opt, 1), delay), "set_keepalive")
        return True
    backend.set(fd, enable_opt, 1 if enable else 0)
    return True


def _get_keepalive(sock: Any) -> bool:
    backend = _backend()
    opt = backend.option("enable")
    return backend.get(fileno(sock), opt) != 0


def _get_settings(sock: Any) -> Settings:
    backend = _backend()
    table = backend.table
    fd = fileno(sock)
    enable = backend.option("enable")
    values: List[Optional[int]] = []
    for opt in (table.idle, table.interval, table.probes, table.user_timeout):
        if opt is None or not opt.readable:
            values.append(None)
        else:
            values.append(_public(opt, backend.get(fd, opt)))
    return Settings(backend.get(fd, enable) != 0, *values)


def _lower_bound(opt: Option, native: int, system: Optional[int]) -> float:
    """What *native* means for *opt*, in ms or a count, to compare it.

    A user timeout of 0 is the system's data timeout (*system*; unknown:
    longer than any value).
    """
    if opt.knob == "user_timeout" and native == 0:
        return float("inf") if system is None else system
    return from_native(opt, native)


def _configure_lower(
    sock: Any,
    enable: object,
    idle: object,
    interval: object,
    probes: object,
    user_timeout: object,
    only_lower: object,
) -> Settings:
    """:func:`configure` with ``only_lower=True``: lower values, never raise them."""
    backend = _backend()
    _check_enable(enable)
    _check_enable(only_lower, "only_lower")
    fd = fileno(sock)
    planned = plan(backend.option, zip(_APPLY_ORDER, (user_timeout, probes, interval, idle)))
    for knob, opt, _value, _native in planned:
        if not opt.readable:
            raise UnsupportedOptionError.for_knob(
                knob,
                backend.table.name,
                f"only_lower compares with the current value, and {opt.name} cannot be read back",
            )
    # Everything is read before anything is written.
    current = [backend.get(fd, opt) for _knob, opt, _value, _native in planned]
    system = None
    if any(knob == "user_timeout" for knob, *_ in planned):
        from ._defaults import default_data_timeout

        system = default_data_timeout()
    # Keepalive on first: the values written next take effect on every
    # platform (xnu re-arms its timer with the idle time only then).
    writes = [(backend.option("enable"), 1)] if enable else []
    for (_knob, opt, _value, native), now in zip(planned, current):
        if _lower_bound(opt, now, system) > _lower_bound(opt, native, system):
            writes.append((opt, native))
    if writes:
        _atomic.apply(backend, fd, writes, "configure")
    return _get_settings(fd)


def _configure(
    sock: Any,
    enable: object,
    idle: object,
    interval: object,
    probes: object,
    user_timeout: object,
) -> Settings:
    backend = _backend()
    _check_enable(enable)
    fd = fileno(sock)
    planned = plan(backend.option, zip(_APPLY_ORDER, (user_timeout, probes, interval, idle)))
    writes = [(opt, native) for _knob, opt, _value, native in planned]
    writes.append((backend.option("enable"), 1 if enable else 0))
    if enable and planned and planned[-1][0] == "idle":
        writes.append(writes[-2])  # see _APPLY_ORDER
    _atomic.apply(backend, fd, writes, "configure")
    return _get_settings(fd)


# -- SO_KEEPALIVE ----------------------------------------------------------


def set_keepalive(sock: Any, enable: bool = True, initial_delay: Milliseconds = 0) -> bool:
    """Turn keepalive on or off (``SO_KEEPALIVE``), like Node's ``socket.setKeepAlive``.

    When enabling with a non-zero *initial_delay* (ms), also sets the idle
    time before the first probe (``TCP_KEEPIDLE``, truncated to whole
    seconds where the kernel takes seconds); ``0`` leaves it unchanged.
    The idle time is written before ``SO_KEEPALIVE``, so a refusal leaves
    keepalive as it was, and again after it, so that the kernel's running
    timer uses it (macOS only re-arms the timer with the socket's idle time
    while keepalive is on).
    """
    if type(enable) is bool and type(initial_delay) is int:
        if initial_delay == 0 and _fast_set(_enable, sock, 1 if enable else 0):
            return True
        f = _idle
        fast = f.backend is _sys._current and _enable.backend is f.backend
        if enable and fast and f.lo <= initial_delay <= f.hi:
            return _keepalive_fast(sock, initial_delay)
    return _set_keepalive(sock, enable, initial_delay)


def _keepalive_fast(sock: Any, delay: int) -> bool:
    """``set_keepalive(sock, True, delay)`` on the fast path: as _set_keepalive does."""
    fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
    native = delay // _idle.scale
    step = 0
    was: Tuple[int, ...] = ()
    try:  # a refused read, too, is framed as "nothing was changed"
        was = (_native(_idle, fd), _native(_enable, fd))
        _put(_idle, fd, native)
        step = 1
        _put(_enable, fd, 1)
        step = 2
        _put(_idle, fd, native)
    except OSError as exc:
        records = (_idle, _enable)[:step]
        raise _atomic.undo_fast(
            _backend(), fd, records, was, (delay, 1), exc, "set_keepalive"
        ) from None
    return True


def get_keepalive(sock: Any) -> bool:
    """Whether keepalive is on (``getsockopt(SO_KEEPALIVE)``)."""
    f = _enable
    if f.backend is _sys._current:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        return _read(f, fd) != 0
    return _get_keepalive(sock)


# -- TCP_KEEPIDLE ----------------------------------------------------------


def set_keepalive_idle(sock: Any, idle: Milliseconds) -> bool:
    """Set the idle time before the first keepalive probe, in ms.

    ``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on macOS).  Linux takes whole
    seconds: milliseconds are truncated (1500 → 1 s, read back as 1000).
    """
    return _fast_set(_idle, sock, idle) or _set("idle", sock, idle)


def get_keepalive_idle(sock: Any) -> int:
    """The idle time before the first keepalive probe, in ms (``TCP_KEEPIDLE``)."""
    f = _idle
    if f.backend is _sys._current:
        return _read(f, _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock))
    return _get("idle", sock)


# -- TCP_KEEPINTVL ---------------------------------------------------------


def set_keepalive_interval(sock: Any, interval: Milliseconds) -> bool:
    """Set the time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    Linux takes whole seconds: milliseconds are truncated (1500 → 1 s,
    read back as 1000); a non-zero time under one second is a ``ValueError``.
    """
    return _fast_set(_interval, sock, interval) or _set("interval", sock, interval)


def get_keepalive_interval(sock: Any) -> Optional[int]:
    """The time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    ``None`` where the kernel reports it as never set (illumos reads back 0).
    """
    f = _interval
    if f.backend is _sys._current:
        return _read(f, _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock))
    return _get_or_unset("interval", sock)


# -- TCP_KEEPCNT -----------------------------------------------------------


def set_keepalive_probes(sock: Any, probes: int) -> bool:
    """Set how many unanswered probes drop the connection (``TCP_KEEPCNT``).

    Linux accepts 1 to 127.
    """
    return _fast_set(_probes, sock, probes) or _set("probes", sock, probes)


def get_keepalive_probes(sock: Any) -> Optional[int]:
    """How many unanswered probes drop the connection (``TCP_KEEPCNT``).

    ``None`` where the kernel reports it as never set (illumos reads back 0).
    """
    f = _probes
    if f.backend is _sys._current:
        return _read(f, _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock))
    return _get_or_unset("probes", sock)


# -- TCP_USER_TIMEOUT ------------------------------------------------------


def set_user_timeout(sock: Any, timeout: Milliseconds) -> bool:
    """Set how long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``).

    After that the kernel drops the connection with ``ETIMEDOUT``.
    ``0`` restores the system default; a non-zero time under one
    millisecond (``0.5``, ``timedelta(microseconds=500)``) is a ``ValueError``.
    """
    return _fast_set(_user_timeout, sock, timeout) or _set("user_timeout", sock, timeout)


def get_user_timeout(sock: Any) -> int:
    """How long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``)."""
    f = _user_timeout
    if f.backend is _sys._current:
        return _read(f, _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock))
    return _get("user_timeout", sock)


# -- all at once -----------------------------------------------------------


def _read_all(fd: int) -> Settings:
    """Every option of *fd*, through the fast path (``_all_for`` is current)."""
    idle = _read(_idle, fd)  # the general path's order, so errors match
    interval = _read(_interval, fd)
    probes = _read(_probes, fd)
    user_timeout = _read(_user_timeout, fd)
    values = (_read(_enable, fd) != 0, idle, interval, probes, user_timeout)
    settings: Settings = _tuple_new(Settings, values)
    return settings


def get_settings(sock: Any) -> Settings:
    """Read every keepalive option of *sock* back from the kernel.

    Options the running platform lacks, or cannot report (Windows'
    ``SIO_KEEPALIVE_VALS``), are ``None``.
    """
    if _all_for is _sys._current:
        return _read_all(_socket_fileno(sock) if type(sock) is _socket_type else fileno(sock))
    return _get_settings(sock)


def _in_span(value: object, f: _Fast) -> TypeGuard[Optional[int]]:
    """Whether the fast path takes *value* (``None``: not given) for *f*."""
    return value is None or (type(value) is int and f.lo <= value <= f.hi)


def configure(
    sock: Any,
    *,
    enable: bool = True,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
    only_lower: bool = False,
) -> Settings:
    """Set every option given, then return the settings read back.

    ``SO_KEEPALIVE`` follows *enable*; ``idle``, ``interval`` (ms),
    ``probes`` and ``user_timeout`` (ms) are applied only when not
    ``None``.  Every argument is validated before the socket is touched,
    so a ``TypeError``/``ValueError`` (or an option the platform lacks)
    changes nothing.  When enabling, the idle time is written again after
    ``SO_KEEPALIVE=1``, so that the kernel's running timer uses it
    (see :doc:`knobs`).

    With *only_lower*, each value is set only where the socket's current
    one (``getsockopt``, compared in the kernel's unit) is higher, so a
    time an administrator lowered is never raised; a ``user_timeout`` of
    0 counts as the system's data timeout (Linux: from
    ``net.ipv4.tcp_retries2``, see :attr:`Settings.data_timeout`;
    elsewhere: longer than any value).  ``enable=True`` turns keepalive on;
    ``enable=False`` leaves ``SO_KEEPALIVE`` as it is.  An option that
    cannot be read back raises :class:`UnsupportedOptionError` before
    anything changes.
    """
    if only_lower is not False:
        return _configure_lower(sock, enable, idle, interval, probes, user_timeout, only_lower)
    if (
        _all_for is _sys._current
        and type(enable) is bool
        and _in_span(user_timeout, _user_timeout)
        and _in_span(probes, _probes)
        and _in_span(interval, _interval)
        and _in_span(idle, _idle)
    ):
        # Everything is valid: read what is about to change, then apply in
        # _APPLY_ORDER, SO_KEEPALIVE, and the idle time once more when
        # enabling.  A refusal writes back what was written.
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        step = 0  # how many of the five options (was) may have been written
        was: Tuple[Optional[int], ...] = ()
        try:  # a refused read, too, is framed as "nothing was changed"
            was = (
                None if user_timeout is None else _native(_user_timeout, fd),
                None if probes is None else _native(_probes, fd),
                None if interval is None else _native(_interval, fd),
                None if idle is None else _native(_idle, fd),
                _native(_enable, fd),
            )
            if user_timeout is not None:
                _put(_user_timeout, fd, user_timeout // _user_timeout.scale)
            step = 1
            if probes is not None:
                _put(_probes, fd, probes // _probes.scale)
            step = 2
            if interval is not None:
                _put(_interval, fd, interval // _interval.scale)
            step = 3
            if idle is not None:
                _put(_idle, fd, idle // _idle.scale)
                step = 4
                if enable:
                    _put(_enable, fd, 1)
                    step = 5
                    _put(_idle, fd, idle // _idle.scale)
                    return _read_all(fd)
            step = 4
            _put(_enable, fd, 1 if enable else 0)
        except OSError as exc:
            records = (_user_timeout, _probes, _interval, _idle, _enable)[:step]
            given = (user_timeout, probes, interval, idle, int(enable))
            raise _atomic.undo_fast(_backend(), fd, records, was, given, exc) from None
        return _read_all(fd)
    return _configure(sock, enable, idle, interval, probes, user_timeout)


def _native(f: _Fast, fd: int) -> int:
    """``getsockopt`` of *f*'s option, in the kernel's unit (see :func:`_read`)."""
    view, value_ref, length_ref = f.buffers.fast
    if f.c_get(fd, f.level, f.number, value_ref, length_ref) or view[1] != _INT_SIZE:
        view[1] = _INT_SIZE
        return f.retry_get(fd, f.opt)
    value: int = view[0]
    return value

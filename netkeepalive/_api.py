"""Layer 4: the public API, in the public units (milliseconds and counts).

Each setter validates its value, converts it to the unit the running
kernel takes (see :mod:`netkeepalive.constants`), calls ``setsockopt``
through the platform backend and returns ``True``, as Node's
net-keepalive does.  Each getter calls ``getsockopt`` and converts back.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections import namedtuple

from . import _atomic, _sys
from ._convert import from_native, ms_per_unit, plan, to_native
from ._fd import fileno
from ._forksafe import lock as _lock
from .errors import LibraryNotFoundError, UnsupportedOptionError

# ``typing`` (with ``re``), ``datetime`` and the option tables are not
# imported at run time: ``import netkeepalive`` stays cheap, and the tables
# load with the backend on the first call.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

    from ._convert import Milliseconds
    from ._sys.base import Backend
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


_FIELD_DOCS = {
    "enabled": "``SO_KEEPALIVE``: whether keepalive probes are sent at all.",
    "idle": "``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on macOS): idle time before the "
    "first probe, in ms.",
    "interval": "``TCP_KEEPINTVL``: time between probes, in ms.",
    "probes": "``TCP_KEEPCNT``: unanswered probes before the connection is dropped.",
    "user_timeout": "``TCP_USER_TIMEOUT``: how long sent data may stay "
    "unacknowledged, in ms (0 = the system default).",
}

if TYPE_CHECKING:

    class _SettingsFields(NamedTuple):
        enabled: bool
        idle: Optional[int]
        interval: Optional[int]
        probes: Optional[int]
        user_timeout: Optional[int]

else:  # the same class without importing ``typing`` (part of the import cost)
    _SettingsFields = namedtuple("Settings", tuple(_FIELD_DOCS), module=__name__)
    for _name, _doc in _FIELD_DOCS.items():
        getattr(_SettingsFields, _name).__doc__ = _doc


class Settings(_SettingsFields):
    """Keepalive settings of one socket, as read back from the kernel.

    Times are in milliseconds; ``None`` means the running platform has no
    such option, or cannot read it back (Windows' ``SIO_KEEPALIVE_VALS``).
    """

    __slots__ = ()

    @property
    def detection_time(self) -> Optional[int]:
        """How long a silent idle peer goes unnoticed, in ms.

        ``idle + interval * probes`` when ``user_timeout`` is 0.  On Linux
        (and Android) a non-zero ``user_timeout`` replaces the probe count:
        the connection is dropped at the first probe time (``idle + k *
        interval``, ``k >= 1``) at which nothing has been received for
        ``user_timeout`` ms (``tcp_keepalive_timer()``, net/ipv4/tcp_timer.c).
        ``None`` when keepalive is off or a term is unknown here.
        """
        idle, interval, probes = self.idle, self.interval, self.probes
        if not self.enabled or idle is None or interval is None or probes is None:
            return None
        if self.user_timeout and linux_kernel():
            wait = self.user_timeout - idle
            rounds = max(1, -(-wait // interval))  # ceiling division
            return idle + rounds * interval
        return idle + interval * probes

    @property
    def data_timeout(self) -> Optional[int]:
        """How long sent data may stay unacknowledged before the connection fails, in ms.

        ``user_timeout`` when it is set; with ``0`` (or no such option), the
        system's own limit: on Linux the time ``net.ipv4.tcp_retries2``
        retransmissions take (about 924.6 s with the default 15), computed
        as the kernel does from the caller's network namespace when read
        (see :func:`~netkeepalive.system_defaults`).  Linux counts this
        limit and a user timeout alike from the retransmission timer's
        first retransmission, one RTO (at least 200 ms) after the data was
        sent.  ``None`` where the limit is not a fixed time (other systems).
        macOS: at most 832 s, however long ``user_timeout``: xnu stops after
        12 retransmissions whatever ``TCP_RXT_CONNDROPTIME`` says, which can
        only end them earlier (ESTABLISHED only; a zero window is not covered).
        """
        from ._defaults import data_timeout

        return data_timeout(self.user_timeout)


def linux_kernel() -> bool:
    """Whether this process runs on a Linux kernel (Android included)."""
    return sys.platform.startswith("linux") or sys.platform == "android"


def _is_zero(value: object) -> bool:
    if type(value) is int or type(value) is float:
        return value == 0
    if isinstance(value, (int, float)):  # an IntEnum 0 is 0 too; a bool is no time
        return not isinstance(value, bool) and value == 0
    from datetime import timedelta  # loaded only for values that may be one

    return isinstance(value, timedelta) and not value


def _check_enable(enable: object, label: str = "enable") -> bool:
    if type(enable) is not bool:
        raise TypeError(f"{label}: expected a bool, got {type(enable).__name__}")
    return enable


# -- the fast path -----------------------------------------------------------
#
# A server may call these for every connection it accepts.  Each option has
# one accessor (:class:`_Knob`), built once per backend and held in
# ``_knobs``; each public function calls its accessor's ``set``/``get``.
# The accessor's fast branch handles the common call (a ``socket.socket``
# or an ``int`` descriptor, a plain ``int`` value the general path already
# accepted once) with nothing but a type test, one look-up and the C call;
# everything else takes its slow branch, the general path (``_set``/
# ``_get``/...), which validates and raises exactly as before.  The fast
# branch is taken only when its checks prove the general path would do the
# same: same kernel calls, same values, same errors.  A call the kernel
# refuses is handed to the general path, which repeats it through the
# backend's ``set``/``get``, reads ``errno`` and owns every error.
#
# Where an option has no fast branch (the platform lacks it, its backend
# has no raw C functions, the C library failed to load, or no backend is
# chosen yet), its accessor is a :class:`_General`: the general path only.
# ``_sys.use()``/``reset()`` put back the general accessors; the next
# general call builds the fast ones for the backend then current.

_socket_type = socket.socket
_socket_fileno = socket.socket.fileno
_tuple_new = tuple.__new__
_pack_int = struct.Struct("=i").pack
_INT_SIZE = 4
#: The largest descriptor a C ``int`` holds (see :func:`._fd.fileno`).
_FD_MAX = 2**31 - 1
#: How many distinct values one setter remembers, ready packed.
_PACKED_MAX = 256

#: The knobs with a public setter/getter in milliseconds or counts.
_VALUE_KNOBS = ("idle", "interval", "probes", "user_timeout")


class _General:
    """An option's accessor without a fast branch: the general path only.

    *unset*: the getter answers ``None`` where the kernel's 0 means "never
    set" (``TCP_KEEPINTVL``/``TCP_KEEPCNT`` on illumos).
    """

    __slots__ = ("knob", "unset")

    def __init__(self, knob: str, unset: bool = False) -> None:
        self.knob = knob
        self.unset = unset

    def set(self, sock: Any, value: object) -> bool:
        """Set *value* (public unit) on *sock*."""
        return _set(self.knob, sock, value)

    def get(self, sock: Any) -> Any:
        """The value of *sock*, in the public unit."""
        if self.unset:
            return _get_or_unset(self.knob, sock)
        return _get(self.knob, sock)


class _Knob(_General):
    """An option's accessor for the backend it was built for.

    ``c_set``/``c_get`` are ``setsockopt``/``getsockopt`` with the C
    signature, ``buffers`` the backend's per-thread getter buffer.
    ``packed`` maps each plain ``int`` the general path has accepted (public
    unit) to the 4 bytes of its native value: immutable, so threads share
    them, and a value in it passed every check already.  Plain ints in
    ``lo..hi`` are valid, and ``native = value // scale``, ``public =
    native * scale`` (for :func:`configure` and :func:`install`).
    """

    __slots__ = (
        "backend", "buffers", "c_get", "c_set", "hi", "level", "lo", "number", "opt",
        "packed", "scale",
    )  # fmt: skip

    if TYPE_CHECKING:
        backend: Backend
        c_set: Callable[..., int]
        c_get: Callable[..., int]
        buffers: Any
        level: int
        number: int
        opt: Option
        packed: Dict[int, bytes]
        lo: int
        hi: int
        scale: int

    def __init__(
        self, knob: str, backend: Backend, opt: Option, span: Tuple[int, int, int]
    ) -> None:
        super().__init__(knob)
        self.backend, self.opt = backend, opt
        self.lo, self.hi, self.scale = span
        self.c_set, self.c_get, self.buffers = backend.fast_functions()  # type: ignore[misc]
        self.level, self.number = opt.level, opt.number
        self.packed = {}

    def set(self, sock: Any, value: object) -> bool:
        """Set *value* (public unit) on *sock*: ``setsockopt``, or the general path."""
        if type(value) is int:
            data = self.packed.get(value)
            if data is not None:
                if type(sock) is _socket_type:
                    fd = _socket_fileno(sock)
                elif type(sock) is int and 0 <= sock <= _FD_MAX:
                    fd = sock
                else:
                    fd = fileno(sock)
                c_set = self.c_set  # an attribute, not a method: no LOAD_METHOD
                if c_set(fd, self.level, self.number, data, _INT_SIZE):
                    return _set(self.knob, sock, value)  # refused: raises with errno
                return True
            done = _set(self.knob, sock, value)
            if self.lo <= value <= self.hi and len(self.packed) < _PACKED_MAX:
                # Accepted by the general path: the next call takes the fast
                # branch.  Bytes are immutable, so threads share them.
                self.packed[value] = _pack_int(value // self.scale)
            return done
        return _set(self.knob, sock, value)

    def get(self, sock: Any) -> int:
        """The value of *sock* in the public unit: ``getsockopt``, or the general path."""
        if type(sock) is _socket_type:
            fd = _socket_fileno(sock)
        elif type(sock) is int and 0 <= sock <= _FD_MAX:
            fd = sock
        else:
            fd = fileno(sock)
        view, value_ref, length_ref = self.buffers.fast
        c_get = self.c_get  # an attribute, not a method: no LOAD_METHOD
        if c_get(fd, self.level, self.number, value_ref, length_ref) or view[1] != _INT_SIZE:
            # Refused, or not an int's size: the length is put back, and the
            # general path repeats the call, raises or decodes.
            view[1] = _INT_SIZE
            return _get(self.knob, sock)
        value: int = view[0]
        return value * self.scale


class _Knobs:
    """The accessor of every option; ``complete`` when each has a fast branch."""

    __slots__ = (
        "backend", "complete", "enable", "idle", "interval", "ordered", "probes", "user_timeout",
    )  # fmt: skip

    if TYPE_CHECKING:
        #: The value options' accessors in ``_APPLY_ORDER`` (fast ones when complete).
        ordered: Tuple[_Knob, ...]

    def __init__(self) -> None:
        self.general()

    def general(self) -> None:
        """Every option through the general path (no backend, or another one)."""
        self.complete = False
        self.backend: object = None
        self.enable = _General("enable")
        self.idle = _General("idle")
        self.interval = _General("interval", True)
        self.probes = _General("probes", True)
        self.user_timeout = _General("user_timeout")
        self.ordered = ()

    def build(self, backend: Backend) -> None:
        """The accessors for *backend* (loads the C library)."""
        built: Dict[str, _General] = {}
        complete = backend.fast_functions() is not None
        for knob in ("enable", *_VALUE_KNOBS):
            opt = backend.table.option(knob)
            span = None if opt is None or opt.fallback is not None or not complete else _span(opt)
            if opt is None or span is None or not opt.readable or opt.zero_is_unset:
                built[knob] = _General(knob, knob in ("interval", "probes"))
                complete = False
            else:
                built[knob] = _Knob(knob, backend, opt, span)
        self.complete = False  # while the accessors are swapped
        self.enable, self.idle = built["enable"], built["idle"]
        self.interval, self.probes = built["interval"], built["probes"]
        self.user_timeout = built["user_timeout"]
        self.ordered = tuple(built[knob] for knob in _APPLY_ORDER)  # type: ignore[misc]
        self.backend = backend
        self.complete = complete


_knobs = _Knobs()


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


def _forget() -> None:
    """``_sys.use()``/``reset()`` changed the backend: general accessors until rebuilt."""
    _knobs.general()


_sys.on_change(_forget)


def _backend() -> Backend:
    """``_sys.backend()``, with the accessors built for it when they are not."""
    backend = _sys.backend()
    if _knobs.backend is not backend:
        with _lock:
            if _knobs.backend is not backend and _sys._current is backend:
                try:
                    _knobs.build(backend)
                except LibraryNotFoundError:
                    # Every call stays on the general path, which validates
                    # its arguments first and then raises this at the C call.
                    _knobs.general()
    return backend


def _put(f: _Knob, fd: int, native: int) -> None:
    """``setsockopt`` of *f*'s option; a refusal goes to the backend's ``set``."""
    c_set = f.c_set
    if c_set(fd, f.level, f.number, _pack_int(native), _INT_SIZE):
        f.backend.set(fd, f.opt, native)


def _native(f: _Knob, fd: int) -> int:
    """``getsockopt`` of *f*'s option, in the kernel's unit.

    The length starts at sizeof(int) and is put back whenever a call leaves
    it otherwise; a refusal, or any other length, goes to the backend's
    ``get``, which raises or decodes.
    """
    view, value_ref, length_ref = f.buffers.fast
    c_get = f.c_get
    if c_get(fd, f.level, f.number, value_ref, length_ref) or view[1] != _INT_SIZE:
        view[1] = _INT_SIZE
        return f.backend.get(fd, f.opt)
    value: int = view[0]
    return value


def _fd(sock: Any) -> int:
    """:func:`._fd.fileno`, with a socket or a plain descriptor taken inline."""
    if type(sock) is _socket_type:
        return _socket_fileno(sock)
    if type(sock) is int and 0 <= sock <= _FD_MAX:
        return sock
    return fileno(sock)


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


def _public(opt: Option, native: int) -> Optional[int]:
    """*native* in the public unit; ``None`` where the kernel's 0 means "never set"."""
    return None if native == 0 and opt.zero_is_unset else from_native(opt, native)


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
        knobs = _knobs
        idle, on = knobs.idle, knobs.enable
        if type(on) is _Knob:
            if initial_delay == 0:
                return on.set(sock, 1 if enable else 0)
            if enable and type(idle) is _Knob and idle.lo <= initial_delay <= idle.hi:
                return _keepalive_fast(sock, idle, on, initial_delay)
    return _set_keepalive(sock, enable, initial_delay)


def _keepalive_fast(sock: Any, idle: _Knob, on: _Knob, delay: int) -> bool:
    """``set_keepalive(sock, True, delay)`` on the fast path: as _set_keepalive does."""
    fd = _fd(sock)
    native = delay // idle.scale
    step = 0
    was: Tuple[int, ...] = ()
    try:  # a refused read, too, is framed as "nothing was changed"
        was = (_native(idle, fd), _native(on, fd))
        _put(idle, fd, native)
        step = 1
        _put(on, fd, 1)
        step = 2
        _put(idle, fd, native)
    except OSError as exc:
        records = (idle, on)[:step]
        raise _atomic.undo_fast(
            _backend(), fd, records, was, (delay, 1), exc, "set_keepalive"
        ) from None
    return True


def get_keepalive(sock: Any) -> bool:
    """Whether keepalive is on (``getsockopt(SO_KEEPALIVE)``)."""
    on: bool = _knobs.enable.get(sock) != 0
    return on


# -- TCP_KEEPIDLE ----------------------------------------------------------


def set_keepalive_idle(sock: Any, idle: Milliseconds) -> bool:
    """Set the idle time before the first keepalive probe, in ms.

    ``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on macOS).  Linux takes whole
    seconds: milliseconds are truncated (1500 → 1 s, read back as 1000).
    """
    return _knobs.idle.set(sock, idle)


def get_keepalive_idle(sock: Any) -> int:
    """The idle time before the first keepalive probe, in ms (``TCP_KEEPIDLE``)."""
    return _knobs.idle.get(sock)  # type: ignore[no-any-return]


# -- TCP_KEEPINTVL ---------------------------------------------------------


def set_keepalive_interval(sock: Any, interval: Milliseconds) -> bool:
    """Set the time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    Linux takes whole seconds: milliseconds are truncated (1500 → 1 s,
    read back as 1000); a non-zero time under one second is a ``ValueError``.
    """
    return _knobs.interval.set(sock, interval)


def get_keepalive_interval(sock: Any) -> Optional[int]:
    """The time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    ``None`` where the kernel reports it as never set (illumos reads back 0).
    """
    return _knobs.interval.get(sock)  # type: ignore[no-any-return]


# -- TCP_KEEPCNT -----------------------------------------------------------


def set_keepalive_probes(sock: Any, probes: int) -> bool:
    """Set how many unanswered probes drop the connection (``TCP_KEEPCNT``).

    Linux accepts 1 to 127.
    """
    return _knobs.probes.set(sock, probes)


def get_keepalive_probes(sock: Any) -> Optional[int]:
    """How many unanswered probes drop the connection (``TCP_KEEPCNT``).

    ``None`` where the kernel reports it as never set (illumos reads back 0).
    """
    return _knobs.probes.get(sock)  # type: ignore[no-any-return]


# -- TCP_USER_TIMEOUT ------------------------------------------------------


def set_user_timeout(sock: Any, timeout: Milliseconds) -> bool:
    """Set how long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``).

    After that the kernel drops the connection with ``ETIMEDOUT``.
    ``0`` restores the system default; a non-zero time under one
    millisecond (``0.5``, ``timedelta(microseconds=500)``) is a ``ValueError``.
    """
    return _knobs.user_timeout.set(sock, timeout)


def get_user_timeout(sock: Any) -> int:
    """How long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``)."""
    return _knobs.user_timeout.get(sock)  # type: ignore[no-any-return]


# -- all at once -----------------------------------------------------------


def get_settings(sock: Any) -> Settings:
    """Read every keepalive option of *sock* back from the kernel.

    Options the running platform lacks, or cannot report (Windows'
    ``SIO_KEEPALIVE_VALS``), are ``None``.
    """
    knobs = _knobs
    if knobs.complete:
        return _read_all(knobs, sock)
    return _get_settings(sock)


def _read_all(knobs: _Knobs, sock: Any) -> Settings:
    """Every option of *sock* through the fast branches (``knobs.complete``).

    One per-thread buffer for the five calls; a refusal, or a value not of
    an int's size, hands the whole read to the general path, which repeats
    it in the same order and raises or decodes.
    """
    fd = _fd(sock)
    timeout, probes, interval, idle = knobs.ordered  # _APPLY_ORDER
    on: _Knob = knobs.enable  # type: ignore[assignment]
    view, ref, length = idle.buffers.fast
    c_get = idle.c_get
    # Each call only while the ones before it succeeded (``ok and``).
    ok = not c_get(fd, idle.level, idle.number, ref, length) and view[1] == _INT_SIZE
    v_idle = view[0] * idle.scale
    ok = ok and not c_get(fd, interval.level, interval.number, ref, length) and view[1] == 4
    v_interval = view[0] * interval.scale
    ok = ok and not c_get(fd, probes.level, probes.number, ref, length) and view[1] == 4
    v_probes = view[0] * probes.scale
    ok = ok and not c_get(fd, timeout.level, timeout.number, ref, length) and view[1] == 4
    v_timeout = view[0] * timeout.scale
    ok = ok and not c_get(fd, on.level, on.number, ref, length) and view[1] == 4
    if ok:
        values = (view[0] != 0, v_idle, v_interval, v_probes, v_timeout)
        settings: Settings = _tuple_new(Settings, values)
        return settings
    view[1] = _INT_SIZE
    return _get_settings(sock)


def _fast_writes(knobs: _Knobs, given: Tuple[object, ...]) -> Optional[List[Tuple[_Knob, int]]]:
    """``(accessor, native)`` for *given* (in ``_APPLY_ORDER``, ``None``: not given).

    ``None`` unless every value given is a plain ``int`` its fast branch
    takes (``knobs.complete``): anything else goes the general way.
    """
    ordered = knobs.ordered
    if len(ordered) != len(given):  # use()/reset() put the general accessors back meanwhile
        return None
    writes: List[Tuple[_Knob, int]] = []
    for f, value in zip(ordered, given):
        if value is not None:
            if type(value) is not int or not f.lo <= value <= f.hi:
                return None
            writes.append((f, value // f.scale))
    return writes


def _apply_fast(
    knobs: _Knobs, fd: int, writes: List[Tuple[_Knob, int]], enable: bool, call: str = "configure"
) -> None:
    """*writes* (in ``_APPLY_ORDER``), ``SO_KEEPALIVE``, and the idle time again: all or nothing.

    What :func:`_configure` hands to :func:`._atomic.apply`, on the fast
    branches: each option about to change is read first, and a refusal
    writes back what was written (a refused read: nothing was written).
    """
    on: _Knob = knobs.enable  # type: ignore[assignment]
    again = writes[-1] if enable and writes and writes[-1][0] is knobs.idle else None
    writes = [*writes, (on, 1 if enable else 0)]
    was: List[int] = []
    done = 0
    try:
        for f, _value in writes:
            was.append(_native(f, fd))
        for f, native in writes:
            _put(f, fd, native)
            done += 1
        if again is not None:  # see _APPLY_ORDER
            _put(again[0], fd, again[1])
    except OSError as exc:
        touched = [(f.opt, native, old) for (f, native), old in zip(writes[:done], was)]
        raise _atomic.restore(on.backend, fd, touched, exc, call) from None


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
    knobs = _knobs
    if knobs.complete and type(enable) is bool:
        writes = _fast_writes(knobs, (user_timeout, probes, interval, idle))
        if writes is not None:  # every value valid: as _configure does, on the fast branches
            fd = _fd(sock)
            _apply_fast(knobs, fd, writes, enable)
            return _read_all(knobs, sock)
    return _configure(sock, enable, idle, interval, probes, user_timeout)

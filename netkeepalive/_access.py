"""Layer 5: one accessor per option, and the general path behind it.

Each knob has one accessor (:class:`Knob`, or :class:`General` where there
is no fast branch), built once per backend and held in :data:`accessors`.
The public functions of :mod:`netkeepalive._api` call an accessor's
``set``/``get``; :func:`configure` and :func:`netkeepalive.install` use
:func:`fast_writes` and :func:`apply_fast`.  The general path
(:func:`general_set`, :func:`general_get`, ...) validates, converts and
raises; the fast branch only ever does what it would do.
"""

from __future__ import annotations

import socket
import struct

from . import _atomic, _backends
from ._backends.base import INT_SIZE as _INT_SIZE
from ._backends.base import pack_int as _pack_int
from ._common import VALUE_KNOBS as _VALUE_KNOBS
from ._convert import from_native, ms_per_unit, to_native
from ._convert import public_value as _public
from ._fd import fileno
from ._forksafe import lock as _lock
from ._settings import Settings
from .errors import LibraryNotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from ._backends.base import Backend
    from .constants import Option

__all__ = [
    "APPLY_ORDER",
    "Accessors",
    "General",
    "Knob",
    "accessors",
    "apply_fast",
    "current_backend",
    "descriptor",
    "fast_writes",
    "general_get",
    "general_get_or_unset",
    "general_set",
    "general_settings",
    "put",
    "read_all",
    "read_native",
]

#: The order :func:`configure` applies options in: the one a kernel is most
#: likely to lack first, so a refusal tends to come before anything has
#: changed; then ``SO_KEEPALIVE``.  When keepalive is being enabled the idle
#: time is written once more after ``SO_KEEPALIVE=1``: on macOS a
#: ``TCP_KEEPALIVE`` written while keepalive is off leaves the running
#: timer at the system's 2 hours (xnu bsd/netinet/tcp_timer.h
#: ``TCP_CONN_KEEPIDLE``), and turning keepalive on re-arms nothing.  The
#: first write makes a refusal come before ``SO_KEEPALIVE`` has changed.
APPLY_ORDER = ("user_timeout", "probes", "interval", "idle")


# -- the fast path -----------------------------------------------------------
#
# A server may call these for every connection it accepts.  Each option has
# one accessor (:class:`Knob`), built once per backend and held in
# ``accessors``; each public function calls its accessor's ``set``/``get``.
# The accessor's fast branch handles the common call (a ``socket.socket``
# or an ``int`` descriptor, a plain ``int`` value the general path already
# accepted once) with nothing but a type test, one look-up and the C call;
# everything else takes its slow branch, the general path (``general_set``/
# ``general_get``/...), which validates and raises exactly as before.  The fast
# branch is taken only when its checks prove the general path would do the
# same: same kernel calls, same values, same errors.  A call the kernel
# refuses is handed to the general path, which repeats it through the
# backend's ``set``/``get``, reads ``errno`` and owns every error.
#
# Where an option has no fast branch (the platform lacks it, its backend
# has no raw C functions, the C library failed to load, or no backend is
# chosen yet), its accessor is a :class:`General`: the general path only.
# ``_backends.use()``/``reset()`` put back the general accessors; the next
# general call builds the fast ones for the backend then current.

_socket_type = socket.socket
_socket_fileno = socket.socket.fileno
_tuple_new = tuple.__new__
_struct_error = struct.error
#: The largest descriptor a C ``int`` holds (see :func:`._fd.fileno`).
_FD_MAX = 2**31 - 1
#: How many distinct values one setter remembers, ready packed.
_PACKED_MAX = 256


class General:
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
        return general_set(self.knob, sock, value)

    def get(self, sock: Any) -> Any:
        """The value of *sock*, in the public unit."""
        if self.unset:
            return general_get_or_unset(self.knob, sock)
        return general_get(self.knob, sock)


class Knob(General):
    """An option's accessor for the backend it was built for.

    ``c_set`` is ``setsockopt`` with the C signature, ``c_get``
    ``getsockopt`` answering ``(value, length)`` from the backend's getter
    buffer (``lengths`` its array, ``value_ref``/``length_ref`` its
    pointers; see :func:`._backends.base.decoding`).
    ``packed`` maps each plain ``int`` the general path has accepted (public
    unit) to the 4 bytes of its native value: immutable, so threads share
    them, and a value in it passed every check already.  Plain ints in
    ``lo..hi`` are valid, and ``native = value // scale``, ``public =
    native * scale`` (for :func:`configure` and :func:`install`).
    """

    __slots__ = (
        "backend", "c_get", "c_set", "hi", "length_ref", "lengths", "level", "lo", "number",
        "opt", "packed", "scale", "value_ref",
    )  # fmt: skip

    if TYPE_CHECKING:
        backend: Backend
        c_set: Callable[..., int]
        c_get: Callable[..., Tuple[int, int]]
        lengths: Any
        value_ref: Any
        length_ref: Any
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
        self.c_set, self.c_get, pair = backend.fast_functions()  # type: ignore[misc]
        self.lengths, self.value_ref, self.length_ref = pair.array, pair.value_ref, pair.length_ref
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
                    return general_set(self.knob, sock, value)  # refused: raises with errno
                return True
            done = general_set(self.knob, sock, value)
            if self.lo <= value <= self.hi and len(self.packed) < _PACKED_MAX:
                # Accepted by the general path: the next call takes the fast
                # branch.  Bytes are immutable, so threads share them.
                self.packed[value] = _pack_int(value // self.scale)
            return done
        return general_set(self.knob, sock, value)

    def get(self, sock: Any) -> int:
        """The value of *sock* in the public unit: ``getsockopt``, or the general path."""
        if type(sock) is _socket_type:
            fd = _socket_fileno(sock)
        elif type(sock) is int and 0 <= sock <= _FD_MAX:
            fd = sock
        else:
            fd = fileno(sock)
        c_get = self.c_get  # an attribute, not a method: no LOAD_METHOD
        try:
            value, length = c_get(fd, self.level, self.number, self.value_ref, self.length_ref)
        except _struct_error:  # refused
            length = -1
        if length != _INT_SIZE:
            # Refused, or not an int's size: the length is put back, and the
            # general path repeats the call, raises or decodes.
            self.lengths[1] = _INT_SIZE
            return general_get(self.knob, sock)
        return value * self.scale


class Accessors:
    """The accessor of every option; ``complete`` when each has a fast branch."""

    __slots__ = (
        "backend", "complete", "enable", "idle", "interval", "ordered", "probes", "user_timeout",
    )  # fmt: skip

    if TYPE_CHECKING:
        #: The value options' accessors in ``APPLY_ORDER`` (fast ones when complete).
        ordered: Tuple[Knob, ...]

    def __init__(self) -> None:
        self.general()

    def general(self) -> None:
        """Every option through the general path (no backend, or another one)."""
        self.complete = False
        self.backend: object = None
        self.enable = General("enable")
        self.idle = General("idle")
        self.interval = General("interval", True)
        self.probes = General("probes", True)
        self.user_timeout = General("user_timeout")
        self.ordered = ()

    def build(self, backend: Backend) -> None:
        """The accessors for *backend* (loads the C library)."""
        built: Dict[str, General] = {}
        complete = backend.fast_functions() is not None
        for knob in ("enable", *_VALUE_KNOBS):
            opt = backend.table.option(knob)
            span = None if opt is None or opt.fallback is not None or not complete else _span(opt)
            if opt is None or span is None or not opt.readable or opt.zero_is_unset:
                built[knob] = General(knob, knob in ("interval", "probes"))
                complete = False
            else:
                built[knob] = Knob(knob, backend, opt, span)
        self.complete = False  # while the accessors are swapped
        self.enable, self.idle = built["enable"], built["idle"]
        self.interval, self.probes = built["interval"], built["probes"]
        self.user_timeout = built["user_timeout"]
        self.ordered = tuple(built[knob] for knob in APPLY_ORDER)  # type: ignore[misc]
        self.backend = backend
        self.complete = complete


accessors = Accessors()


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
    """``_backends.use()``/``reset()`` changed the backend: general accessors until rebuilt."""
    accessors.general()


_backends.on_change(_forget)


def current_backend() -> Backend:
    """``_backends.backend()``, with the accessors built for it when they are not."""
    backend = _backends.backend()
    if accessors.backend is not backend:
        with _lock:
            if accessors.backend is not backend and _backends.is_current(backend):
                try:
                    accessors.build(backend)
                except LibraryNotFoundError:
                    # Every call stays on the general path, which validates
                    # its arguments first and then raises this at the C call.
                    accessors.general()
    return backend


def put(f: Knob, fd: int, native: int) -> None:
    """``setsockopt`` of *f*'s option; a refusal goes to the backend's ``set``."""
    c_set = f.c_set
    if c_set(fd, f.level, f.number, _pack_int(native), _INT_SIZE):
        f.backend.set(fd, f.opt, native)


def read_native(f: Knob, fd: int) -> int:
    """``getsockopt`` of *f*'s option, in the kernel's unit.

    The length starts at sizeof(int) and is put back whenever a call leaves
    it otherwise; a refusal, or any other length, goes to the backend's
    ``get``, which raises or decodes.
    """
    # Knob.get's twin in the kernel's unit, its fallback the backend's get:
    # kept apart so that the public getter pays no second call.
    c_get = f.c_get
    try:
        value, length = c_get(fd, f.level, f.number, f.value_ref, f.length_ref)
    except _struct_error:  # refused
        length = -1
    if length != _INT_SIZE:
        f.lengths[1] = _INT_SIZE
        return f.backend.get(fd, f.opt)
    return value


def descriptor(sock: Any) -> int:
    """:func:`._fd.fileno`, with a socket or a plain descriptor taken inline."""
    if type(sock) is _socket_type:
        return _socket_fileno(sock)
    if type(sock) is int and 0 <= sock <= _FD_MAX:
        return sock
    return fileno(sock)


# -- the general path --------------------------------------------------------


def general_set(knob: str, sock: Any, value: object) -> bool:
    backend = current_backend()
    opt = backend.option(knob)
    fd = fileno(sock)
    backend.set(fd, opt, to_native(opt, value, knob))
    return True


def general_get(knob: str, sock: Any) -> int:
    backend = current_backend()
    opt = backend.option(knob)
    return from_native(opt, backend.get(fileno(sock), opt))


def general_get_or_unset(knob: str, sock: Any) -> Optional[int]:
    """:func:`general_get`, with ``None`` where the kernel's 0 means "never set"."""
    backend = current_backend()
    opt = backend.option(knob)
    return _public(opt, backend.get(fileno(sock), opt))


def general_settings(sock: Any) -> Settings:
    backend = current_backend()
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


def read_all(knobs: Accessors, sock: Any) -> Settings:
    """Every option of *sock* through the fast branches (``knobs.complete``).

    The five calls share one buffer; a refusal, or a value not of an int's
    size (the kernel shortens the length, and every later call with it), hands
    the whole read to the general path, which repeats it in the same order
    and raises or decodes.
    """
    fd = descriptor(sock)
    timeout, probes, interval, idle = knobs.ordered  # APPLY_ORDER
    on: Knob = knobs.enable  # type: ignore[assignment]
    ref, length = idle.value_ref, idle.length_ref
    c_get = idle.c_get
    try:
        v_idle, n = c_get(fd, idle.level, idle.number, ref, length)
        v_interval, n2 = c_get(fd, interval.level, interval.number, ref, length)
        v_probes, n3 = c_get(fd, probes.level, probes.number, ref, length)
        v_timeout, n4 = c_get(fd, timeout.level, timeout.number, ref, length)
        v_on, n5 = c_get(fd, on.level, on.number, ref, length)
    except _struct_error:  # refused
        n = -1
    else:
        if n == n2 == n3 == n4 == n5 == _INT_SIZE:
            values = (
                v_on != 0,
                v_idle * idle.scale,
                v_interval * interval.scale,
                v_probes * probes.scale,
                v_timeout * timeout.scale,
            )
            settings: Settings = _tuple_new(Settings, values)
            return settings
    idle.lengths[1] = _INT_SIZE
    return general_settings(sock)


def fast_writes(knobs: Accessors, given: Tuple[object, ...]) -> Optional[List[Tuple[Knob, int]]]:
    """``(accessor, native)`` for *given* (in ``APPLY_ORDER``, ``None``: not given).

    ``None`` unless every value given is a plain ``int`` its fast branch
    takes (``knobs.complete``): anything else goes the general way.
    """
    ordered = knobs.ordered
    if len(ordered) != len(given):  # use()/reset() put the general accessors back meanwhile
        return None
    writes: List[Tuple[Knob, int]] = []
    for f, value in zip(ordered, given):
        if value is not None:
            if type(value) is not int or not f.lo <= value <= f.hi:
                return None
            writes.append((f, value // f.scale))
    return writes


def apply_fast(
    knobs: Accessors, fd: int, writes: List[Tuple[Knob, int]], enable: bool, call: str = "configure"
) -> None:
    """*writes* (in ``APPLY_ORDER``), ``SO_KEEPALIVE``, and the idle time again: all or nothing.

    What :func:`_configure` hands to :func:`._atomic.apply`, on the fast
    branches: each option about to change is read first, and a refusal
    writes back what was written (a refused read: nothing was written).
    """
    on: Knob = knobs.enable  # type: ignore[assignment]
    again = writes[-1] if enable and writes and writes[-1][0] is knobs.idle else None
    writes = [*writes, (on, 1 if enable else 0)]
    was: List[int] = []
    done = 0
    try:
        for f, _value in writes:
            was.append(read_native(f, fd))
        for f, native in writes:
            put(f, fd, native)
            done += 1
        if again is not None:  # see APPLY_ORDER
            put(again[0], fd, again[1])
    except OSError as exc:
        touched = [(f.opt, native, old) for (f, native), old in zip(writes[:done], was)]
        raise _atomic.restore(on.backend, fd, touched, exc, call) from None

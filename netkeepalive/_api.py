"""Layer 4: the public API, in the public units (milliseconds and counts).

Each setter validates its value, converts it to the unit the running
kernel takes (see :mod:`netkeepalive.constants`), calls ``setsockopt``
through the platform backend and returns ``True``, as Node's
net-keepalive does.  Each getter calls ``getsockopt`` and converts back.
"""

from __future__ import annotations

import socket
import sys
from collections import namedtuple

from . import _sys
from ._convert import from_native, plan, to_native
from ._fd import fileno
from .errors import LibraryNotFoundError

# ``typing`` (with ``re``), ``datetime`` and the option tables are not
# imported at run time: ``import netkeepalive`` stays cheap, and the tables
# load with the backend on the first call.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, NamedTuple, Optional

    from ._convert import Milliseconds
    from ._sys.base import Backend

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
#: likely to lack first, ``SO_KEEPALIVE`` last, so a refusal tends to come
#: before anything has changed.
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

        ``idle + interval * probes`` when ``user_timeout`` is 0.  On Linux a
        non-zero ``user_timeout`` replaces the probe count: the connection
        is dropped at the first probe time (``idle + k * interval``,
        ``k >= 1``) at which nothing has been received for ``user_timeout``
        ms.  ``None`` when keepalive is off or a term is unknown here.
        """
        idle, interval, probes = self.idle, self.interval, self.probes
        if not self.enabled or idle is None or interval is None or probes is None:
            return None
        if self.user_timeout and sys.platform.startswith("linux"):
            wait = self.user_timeout - idle
            rounds = max(1, -(-wait // interval))  # ceiling division
            return idle + rounds * interval
        return idle + interval * probes


def _is_zero(value: object) -> bool:
    if type(value) is int or type(value) is float:
        return value == 0
    from datetime import timedelta  # loaded only for values that may be one

    return isinstance(value, timedelta) and not value


def _check_enable(enable: object, label: str = "enable") -> bool:
    if type(enable) is not bool:
        raise TypeError(f"{label}: expected a bool, got {type(enable).__name__}")
    return enable


# -- the fast path -----------------------------------------------------------
#
# A server may call these for every connection it accepts.  Each public
# function first tries a fast path that handles the common call (a
# ``socket.socket`` or descriptor, a plain ``int`` inside the option's range)
# with everything that does not depend on the call worked out once per
# backend in :class:`_Paths`; any other call takes the general path below it
# (``_set``/``_get``/...), which validates and raises exactly as before.  The
# fast path is taken only when its checks prove the general path would do the
# same: same kernel calls, same values, same errors.


class _Never:
    """Stands where a backend would when a fast path must not be taken."""


_NEVER = _Never()
_socket_type = socket.socket
_socket_fileno = socket.socket.fileno
_tuple_new = tuple.__new__

#: The knobs with a public setter/getter in milliseconds or counts.
_VALUE_KNOBS = ("idle", "interval", "probes", "user_timeout")
_KNOB_PARTS = ("for", "set", "get", "lo", "hi", "scale")


class _Paths:
    """Per-backend data of the fast path.

    ``<knob>_for`` is the backend the entry was built for, or :data:`_NEVER`
    when the running platform lacks the option (the general path then
    raises); a fast path is taken only while it is ``_sys._current``.
    ``<knob>_set(fd, native)``/``<knob>_get(fd)`` are the backend's
    :meth:`~netkeepalive._sys.base.Backend.setter`/``getter``; plain ints in
    ``<knob>_lo..<knob>_hi`` (public unit) are valid, and
    ``native = value // <knob>_scale``, ``public = native * <knob>_scale``.
    """

    __slots__ = (
        "backend",
        "all_for",
        "enable_for",
        "enable_set",
        "enable_get",
        *(f"{knob}_{part}" for knob in _VALUE_KNOBS for part in _KNOB_PARTS),
    )

    def __init__(self, backend: object) -> None:
        self.backend = backend
        self.all_for: object = _NEVER
        self.enable_for: object = _NEVER
        for knob in _VALUE_KNOBS:
            setattr(self, f"{knob}_for", _NEVER)

    if TYPE_CHECKING:
        enable_set: Callable[[int, int], None]
        enable_get: Callable[[int], int]
        idle_for: object
        idle_set: Callable[[int, int], None]
        idle_get: Callable[[int], int]
        idle_lo: int
        idle_hi: int
        idle_scale: int
        interval_for: object
        interval_set: Callable[[int, int], None]
        interval_get: Callable[[int], int]
        interval_lo: int
        interval_hi: int
        interval_scale: int
        probes_for: object
        probes_set: Callable[[int, int], None]
        probes_get: Callable[[int], int]
        probes_lo: int
        probes_hi: int
        probes_scale: int
        user_timeout_for: object
        user_timeout_set: Callable[[int, int], None]
        user_timeout_get: Callable[[int], int]
        user_timeout_lo: int
        user_timeout_hi: int
        user_timeout_scale: int


_paths = _Paths(None)


def _build(backend: Backend) -> _Paths:
    """The fast-path data for *backend* (loads the C library)."""
    from .constants import Unit

    paths = _Paths(backend)
    table = backend.table
    enable = table.option("enable")
    if enable is not None:
        paths.enable_set = backend.setter(enable)
        paths.enable_get = backend.getter(enable)
        paths.enable_for = backend
    supported = enable is not None
    for knob in _VALUE_KNOBS:
        opt = table.option(knob)
        if opt is None:
            supported = False
            continue
        # The plain ints to_native takes, and turns into value // scale.
        if opt.unit is Unit.SECONDS:
            # 1..999 ms truncate to 0 s, which to_native refuses for a
            # non-zero time: those take the general path.
            lo, hi, scale = max(opt.minimum, 1) * 1000, opt.maximum * 1000 + 999, 1000
        elif opt.unit is Unit.MILLISECONDS:
            lo, hi, scale = max(opt.minimum, 0), opt.maximum, 1  # negative: refused
        elif opt.unit is Unit.COUNT:
            lo, hi, scale = opt.minimum, opt.maximum, 1
        else:  # no fast path for a unit this code does not know
            supported = False
            continue
        setattr(paths, f"{knob}_set", backend.setter(opt))
        setattr(paths, f"{knob}_get", backend.getter(opt))
        setattr(paths, f"{knob}_lo", lo)
        setattr(paths, f"{knob}_hi", hi)
        setattr(paths, f"{knob}_scale", scale)
        setattr(paths, f"{knob}_for", backend)
        if not opt.readable:  # get_settings reports it as None: general path
            supported = False
    if supported:
        paths.all_for = backend
    return paths


def _backend() -> Backend:
    """``_sys.backend()``, with the fast paths rebuilt when it changed."""
    global _paths
    backend = _sys.backend()
    if _paths.backend is not backend:
        try:
            _paths = _build(backend)
        except LibraryNotFoundError:
            # Every call stays on the general path, which validates its
            # arguments first and then raises this when it reaches C.
            _paths = _Paths(None)
    return backend


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
        backend.set(fd, *delay)
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
            values.append(from_native(opt, backend.get(fd, opt)))
    return Settings(backend.get(fd, enable) != 0, *values)


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
    enable_opt = backend.option("enable")
    for _knob, opt, _value, native in planned:
        backend.set(fd, opt, native)
    backend.set(fd, enable_opt, 1 if enable else 0)
    return _get_settings(fd)


# -- SO_KEEPALIVE ----------------------------------------------------------


def set_keepalive(sock: Any, enable: bool = True, initial_delay: Milliseconds = 0) -> bool:
    """Turn keepalive on or off (``SO_KEEPALIVE``), like Node's ``socket.setKeepAlive``.

    When enabling with a non-zero *initial_delay* (ms), also sets the idle
    time before the first probe (``TCP_KEEPIDLE``, truncated to whole
    seconds where the kernel takes seconds); ``0`` leaves it unchanged.
    The idle time is set first, so a refusal leaves keepalive as it was.
    """
    p = _paths
    if (
        p.enable_for is _sys._current
        and type(enable) is bool
        and type(initial_delay) is int
        and initial_delay == 0
    ):
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        p.enable_set(fd, 1 if enable else 0)
        return True
    return _set_keepalive(sock, enable, initial_delay)


def get_keepalive(sock: Any) -> bool:
    """Whether keepalive is on (``getsockopt(SO_KEEPALIVE)``)."""
    p = _paths
    if p.enable_for is _sys._current:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        return p.enable_get(fd) != 0
    return _get_keepalive(sock)


# -- TCP_KEEPIDLE ----------------------------------------------------------


def set_keepalive_idle(sock: Any, idle: Milliseconds) -> bool:
    """Set the idle time before the first keepalive probe, in ms.

    ``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on macOS).  Linux takes whole
    seconds: milliseconds are truncated (1500 → 1 s, read back as 1000).
    """
    p = _paths
    if p.idle_for is _sys._current and type(idle) is int and p.idle_lo <= idle <= p.idle_hi:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        p.idle_set(fd, idle // p.idle_scale)
        return True
    return _set("idle", sock, idle)


def get_keepalive_idle(sock: Any) -> int:
    """The idle time before the first keepalive probe, in ms (``TCP_KEEPIDLE``)."""
    p = _paths
    if p.idle_for is _sys._current:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        return p.idle_get(fd) * p.idle_scale
    return _get("idle", sock)


# -- TCP_KEEPINTVL ---------------------------------------------------------


def set_keepalive_interval(sock: Any, interval: Milliseconds) -> bool:
    """Set the time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    Linux takes whole seconds: milliseconds are truncated (1500 → 1 s,
    read back as 1000); a non-zero time under one second is a ``ValueError``.
    """
    p = _paths
    if (
        p.interval_for is _sys._current
        and type(interval) is int
        and p.interval_lo <= interval <= p.interval_hi
    ):
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        p.interval_set(fd, interval // p.interval_scale)
        return True
    return _set("interval", sock, interval)


def get_keepalive_interval(sock: Any) -> int:
    """The time between keepalive probes, in ms (``TCP_KEEPINTVL``)."""
    p = _paths
    if p.interval_for is _sys._current:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        return p.interval_get(fd) * p.interval_scale
    return _get("interval", sock)


# -- TCP_KEEPCNT -----------------------------------------------------------


def set_keepalive_probes(sock: Any, probes: int) -> bool:
    """Set how many unanswered probes drop the connection (``TCP_KEEPCNT``).

    Linux accepts 1 to 127.
    """
    p = _paths
    if (
        p.probes_for is _sys._current
        and type(probes) is int
        and p.probes_lo <= probes <= p.probes_hi
    ):
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        p.probes_set(fd, probes)  # a count: scale 1
        return True
    return _set("probes", sock, probes)


def get_keepalive_probes(sock: Any) -> int:
    """How many unanswered probes drop the connection (``TCP_KEEPCNT``)."""
    p = _paths
    if p.probes_for is _sys._current:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        return p.probes_get(fd)  # a count: scale 1
    return _get("probes", sock)


# -- TCP_USER_TIMEOUT ------------------------------------------------------


def set_user_timeout(sock: Any, timeout: Milliseconds) -> bool:
    """Set how long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``).

    After that the kernel drops the connection with ``ETIMEDOUT``.
    ``0`` restores the system default.
    """
    p = _paths
    if (
        p.user_timeout_for is _sys._current
        and type(timeout) is int
        and p.user_timeout_lo <= timeout <= p.user_timeout_hi
    ):
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        p.user_timeout_set(fd, timeout // p.user_timeout_scale)
        return True
    return _set("user_timeout", sock, timeout)


def get_user_timeout(sock: Any) -> int:
    """How long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``)."""
    p = _paths
    if p.user_timeout_for is _sys._current:
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        return p.user_timeout_get(fd) * p.user_timeout_scale
    return _get("user_timeout", sock)


# -- all at once -----------------------------------------------------------


def _read_all(p: _Paths, fd: int) -> Settings:
    """Every option of *fd*, on a platform that has them all (``p.all_for``)."""
    idle = p.idle_get(fd) * p.idle_scale
    interval = p.interval_get(fd) * p.interval_scale
    probes = p.probes_get(fd) * p.probes_scale
    user_timeout = p.user_timeout_get(fd) * p.user_timeout_scale
    values = (p.enable_get(fd) != 0, idle, interval, probes, user_timeout)
    settings: Settings = _tuple_new(Settings, values)
    return settings


def get_settings(sock: Any) -> Settings:
    """Read every keepalive option of *sock* back from the kernel.

    Options the running platform lacks, or cannot report (Windows'
    ``SIO_KEEPALIVE_VALS``), are ``None``.
    """
    p = _paths
    if p.all_for is _sys._current:
        return _read_all(p, _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock))
    return _get_settings(sock)


def configure(
    sock: Any,
    *,
    enable: bool = True,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> Settings:
    """Set every option given, then return the settings read back.

    ``SO_KEEPALIVE`` follows *enable*; ``idle``, ``interval`` (ms),
    ``probes`` and ``user_timeout`` (ms) are applied only when not
    ``None``.  Every argument is validated before the socket is touched,
    so a ``TypeError``/``ValueError`` (or an option the platform lacks)
    changes nothing.
    """
    p = _paths
    if (
        p.all_for is _sys._current
        and type(enable) is bool
        and (
            user_timeout is None
            or (
                type(user_timeout) is int and p.user_timeout_lo <= user_timeout <= p.user_timeout_hi
            )
        )
        and (probes is None or (type(probes) is int and p.probes_lo <= probes <= p.probes_hi))
        and (
            interval is None
            or (type(interval) is int and p.interval_lo <= interval <= p.interval_hi)
        )
        and (idle is None or (type(idle) is int and p.idle_lo <= idle <= p.idle_hi))
    ):
        # Everything is valid: apply in _APPLY_ORDER, SO_KEEPALIVE last.
        fd = _socket_fileno(sock) if type(sock) is _socket_type else fileno(sock)
        if user_timeout is not None:
            p.user_timeout_set(fd, user_timeout // p.user_timeout_scale)
        if probes is not None:
            p.probes_set(fd, probes // p.probes_scale)
        if interval is not None:
            p.interval_set(fd, interval // p.interval_scale)
        if idle is not None:
            p.idle_set(fd, idle // p.idle_scale)
        p.enable_set(fd, 1 if enable else 0)
        return _read_all(p, fd)
    return _configure(sock, enable, idle, interval, probes, user_timeout)

"""Layer 6: the public API, in the public units (milliseconds and counts).

Each setter validates its value, converts it to the unit the running
kernel takes (see :mod:`netkeepalive.constants`), calls ``setsockopt``
through the platform backend and returns ``True``, as Node's
net-keepalive does.  Each getter calls ``getsockopt`` and converts back.
"""

from __future__ import annotations

from . import _atomic
from ._access import (
    APPLY_ORDER,
    Knob,
    accessors,
    apply_fast,
    current_backend,
    descriptor,
    fast_writes,
    general_settings,
    put,
    read_all,
    read_native,
)
from ._convert import check_enable as _check_enable
from ._convert import from_native, plan, to_native
from ._fd import fileno
from ._settings import Settings
from .errors import UnsupportedOptionError

# ``typing`` (with ``re``), ``datetime`` and the option tables are not
# imported at run time: ``import netkeepalive`` stays cheap, and the tables
# load with the backend on the first call.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Tuple

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


def _is_zero(value: object) -> bool:
    if type(value) is int or type(value) is float:
        return value == 0
    if isinstance(value, (int, float)):  # an IntEnum 0 is 0 too; a bool is no time
        return not isinstance(value, bool) and value == 0
    from datetime import timedelta  # loaded only for values that may be one

    return isinstance(value, timedelta) and not value


def _set_keepalive(sock: Any, enable: object, initial_delay: object) -> bool:
    backend = current_backend()
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
        # again after SO_KEEPALIVE=1: see APPLY_ORDER.  All or nothing.
        _atomic.apply(backend, fd, (delay, (enable_opt, 1), delay), "set_keepalive")
        return True
    backend.set(fd, enable_opt, 1 if enable else 0)
    return True


def _get_keepalive(sock: Any) -> bool:
    backend = current_backend()
    opt = backend.option("enable")
    return backend.get(fileno(sock), opt) != 0


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
    backend = current_backend()
    _check_enable(enable)
    _check_enable(only_lower, "only_lower")
    fd = fileno(sock)
    planned = plan(backend.option, zip(APPLY_ORDER, (user_timeout, probes, interval, idle)))
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
    return general_settings(fd)


def _configure(
    sock: Any,
    enable: object,
    idle: object,
    interval: object,
    probes: object,
    user_timeout: object,
) -> Settings:
    backend = current_backend()
    _check_enable(enable)
    fd = fileno(sock)
    planned = plan(backend.option, zip(APPLY_ORDER, (user_timeout, probes, interval, idle)))
    writes = [(opt, native) for _knob, opt, _value, native in planned]
    writes.append((backend.option("enable"), 1 if enable else 0))
    if enable and planned and planned[-1][0] == "idle":
        writes.append(writes[-2])  # see APPLY_ORDER
    _atomic.apply(backend, fd, writes, "configure")
    return general_settings(fd)


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
        knobs = accessors
        idle, on = knobs.idle, knobs.enable
        if type(on) is Knob:
            if initial_delay == 0:
                return on.set(sock, 1 if enable else 0)
            if enable and type(idle) is Knob and idle.lo <= initial_delay <= idle.hi:
                return _keepalive_fast(sock, idle, on, initial_delay)
    return _set_keepalive(sock, enable, initial_delay)


def _keepalive_fast(sock: Any, idle: Knob, on: Knob, delay: int) -> bool:
    """``set_keepalive(sock, True, delay)`` on the fast path: as _set_keepalive does."""
    fd = descriptor(sock)
    native = delay // idle.scale
    step = 0
    was: Tuple[int, ...] = ()
    try:  # a refused read, too, is framed as "nothing was changed"
        was = (read_native(idle, fd), read_native(on, fd))
        put(idle, fd, native)
        step = 1
        put(on, fd, 1)
        step = 2
        put(idle, fd, native)
    except OSError as exc:
        records = (idle, on)[:step]
        raise _atomic.undo_fast(
            current_backend(), fd, records, was, (delay, 1), exc, "set_keepalive"
        ) from None
    return True


def get_keepalive(sock: Any) -> bool:
    """Whether keepalive is on (``getsockopt(SO_KEEPALIVE)``)."""
    on: bool = accessors.enable.get(sock) != 0
    return on


# -- TCP_KEEPIDLE ----------------------------------------------------------


def set_keepalive_idle(sock: Any, idle: Milliseconds) -> bool:
    """Set the idle time before the first keepalive probe, in ms.

    ``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on macOS).  Linux takes whole
    seconds: milliseconds are truncated (1500 → 1 s, read back as 1000).
    """
    return accessors.idle.set(sock, idle)


def get_keepalive_idle(sock: Any) -> int:
    """The idle time before the first keepalive probe, in ms (``TCP_KEEPIDLE``)."""
    return accessors.idle.get(sock)  # type: ignore[no-any-return]


# -- TCP_KEEPINTVL ---------------------------------------------------------


def set_keepalive_interval(sock: Any, interval: Milliseconds) -> bool:
    """Set the time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    Linux takes whole seconds: milliseconds are truncated (1500 → 1 s,
    read back as 1000); a non-zero time under one second is a ``ValueError``.
    """
    return accessors.interval.set(sock, interval)


def get_keepalive_interval(sock: Any) -> Optional[int]:
    """The time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    ``None`` where the kernel reports it as never set (illumos reads back 0).
    """
    return accessors.interval.get(sock)  # type: ignore[no-any-return]


# -- TCP_KEEPCNT -----------------------------------------------------------


def set_keepalive_probes(sock: Any, probes: int) -> bool:
    """Set how many unanswered probes drop the connection (``TCP_KEEPCNT``).

    Linux accepts 1 to 127.
    """
    return accessors.probes.set(sock, probes)


def get_keepalive_probes(sock: Any) -> Optional[int]:
    """How many unanswered probes drop the connection (``TCP_KEEPCNT``).

    ``None`` where the kernel reports it as never set (illumos reads back 0).
    """
    return accessors.probes.get(sock)  # type: ignore[no-any-return]


# -- TCP_USER_TIMEOUT ------------------------------------------------------


def set_user_timeout(sock: Any, timeout: Milliseconds) -> bool:
    """Set how long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``).

    After that the kernel drops the connection with ``ETIMEDOUT``.
    ``0`` restores the system default; a non-zero time under one
    millisecond (``0.5``, ``timedelta(microseconds=500)``) is a ``ValueError``.
    """
    return accessors.user_timeout.set(sock, timeout)


def get_user_timeout(sock: Any) -> int:
    """How long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``)."""
    return accessors.user_timeout.get(sock)  # type: ignore[no-any-return]


# -- all at once -----------------------------------------------------------


def get_settings(sock: Any) -> Settings:
    """Read every keepalive option of *sock* back from the kernel.

    Options the running platform lacks, or cannot report (Windows'
    ``SIO_KEEPALIVE_VALS``), are ``None``.
    """
    knobs = accessors
    if knobs.complete:
        return read_all(knobs, sock)
    return general_settings(sock)


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
    knobs = accessors
    if knobs.complete and type(enable) is bool:
        writes = fast_writes(knobs, (user_timeout, probes, interval, idle))
        if writes is not None:  # every value valid: as _configure does, on the fast branches
            fd = descriptor(sock)
            apply_fast(knobs, fd, writes, enable)
            return read_all(knobs, sock)
    return _configure(sock, enable, idle, interval, probes, user_timeout)

"""Layer 4: the public API, in the public units (milliseconds and counts).

Each setter validates its value, converts it to the unit the running
kernel takes (see :mod:`netkeepalive.constants`), calls ``setsockopt``
through the platform backend and returns ``True``, as Node's
net-keepalive does.  Each getter calls ``getsockopt`` and converts back.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from . import _sys
from ._convert import Milliseconds, from_native, to_native
from ._fd import fileno
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
#: likely to lack first, ``SO_KEEPALIVE`` last, so a refusal tends to come
#: before anything has changed.
_APPLY_ORDER = ("user_timeout", "probes", "interval", "idle")


class Settings(NamedTuple):
    """Keepalive settings of one socket, as read back from the kernel.

    Times are in milliseconds; ``None`` means the running platform has no
    such option, or cannot read it back (Windows' ``SIO_KEEPALIVE_VALS``).
    """

    #: ``SO_KEEPALIVE``: whether keepalive probes are sent at all.
    enabled: bool
    #: ``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on macOS): idle time before the
    #: first probe, ms.
    idle: Optional[int]
    #: ``TCP_KEEPINTVL``: time between probes, ms.
    interval: Optional[int]
    #: ``TCP_KEEPCNT``: unanswered probes before the connection is dropped.
    probes: Optional[int]
    #: ``TCP_USER_TIMEOUT``: how long sent data may stay unacknowledged, ms
    #: (0 = the system default).
    user_timeout: Optional[int]

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
    return isinstance(value, timedelta) and not value


def _check_enable(enable: object, label: str = "enable") -> bool:
    if type(enable) is not bool:
        raise TypeError(f"{label}: expected a bool, got {type(enable).__name__}")
    return enable


def _set(knob: str, sock: Any, value: object) -> bool:
    backend = _sys.backend()
    opt = backend.option(knob)
    fd = fileno(sock)
    backend.set(fd, opt, to_native(opt, value, knob))
    return True


def _get(knob: str, sock: Any) -> int:
    backend = _sys.backend()
    opt = backend.option(knob)
    return from_native(opt, backend.get(fileno(sock), opt))


# -- SO_KEEPALIVE ----------------------------------------------------------


def set_keepalive(sock: Any, enable: bool = True, initial_delay: Milliseconds = 0) -> bool:
    """Turn keepalive on or off (``SO_KEEPALIVE``), like Node's ``socket.setKeepAlive``.

    When enabling with a non-zero *initial_delay* (ms), also sets the idle
    time before the first probe (``TCP_KEEPIDLE``, truncated to whole
    seconds where the kernel takes seconds); ``0`` leaves it unchanged.
    The idle time is set first, so a refusal leaves keepalive as it was.
    """
    backend = _sys.backend()
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


def get_keepalive(sock: Any) -> bool:
    """Whether keepalive is on (``getsockopt(SO_KEEPALIVE)``)."""
    backend = _sys.backend()
    opt = backend.option("enable")
    return backend.get(fileno(sock), opt) != 0


# -- TCP_KEEPIDLE ----------------------------------------------------------


def set_keepalive_idle(sock: Any, idle: Milliseconds) -> bool:
    """Set the idle time before the first keepalive probe, in ms.

    ``TCP_KEEPIDLE`` (``TCP_KEEPALIVE`` on macOS).  Linux takes whole
    seconds: milliseconds are truncated (1500 → 1 s, read back as 1000).
    """
    return _set("idle", sock, idle)


def get_keepalive_idle(sock: Any) -> int:
    """The idle time before the first keepalive probe, in ms (``TCP_KEEPIDLE``)."""
    return _get("idle", sock)


# -- TCP_KEEPINTVL ---------------------------------------------------------


def set_keepalive_interval(sock: Any, interval: Milliseconds) -> bool:
    """Set the time between keepalive probes, in ms (``TCP_KEEPINTVL``).

    Linux takes whole seconds: milliseconds are truncated (1500 → 1 s,
    read back as 1000); a non-zero time under one second is a ``ValueError``.
    """
    return _set("interval", sock, interval)


def get_keepalive_interval(sock: Any) -> int:
    """The time between keepalive probes, in ms (``TCP_KEEPINTVL``)."""
    return _get("interval", sock)


# -- TCP_KEEPCNT -----------------------------------------------------------


def set_keepalive_probes(sock: Any, probes: int) -> bool:
    """Set how many unanswered probes drop the connection (``TCP_KEEPCNT``).

    Linux accepts 1 to 127.
    """
    return _set("probes", sock, probes)


def get_keepalive_probes(sock: Any) -> int:
    """How many unanswered probes drop the connection (``TCP_KEEPCNT``)."""
    return _get("probes", sock)


# -- TCP_USER_TIMEOUT ------------------------------------------------------


def set_user_timeout(sock: Any, timeout: Milliseconds) -> bool:
    """Set how long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``).

    After that the kernel drops the connection with ``ETIMEDOUT``.
    ``0`` restores the system default.
    """
    return _set("user_timeout", sock, timeout)


def get_user_timeout(sock: Any) -> int:
    """How long sent data may stay unacknowledged, in ms (``TCP_USER_TIMEOUT``)."""
    return _get("user_timeout", sock)


# -- all at once -----------------------------------------------------------


def get_settings(sock: Any) -> Settings:
    """Read every keepalive option of *sock* back from the kernel.

    Options the running platform lacks, or cannot report (Windows'
    ``SIO_KEEPALIVE_VALS``), are ``None``.
    """
    backend = _sys.backend()
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
    backend = _sys.backend()
    _check_enable(enable)
    fd = fileno(sock)
    given: Dict[str, object] = {
        "user_timeout": user_timeout,
        "probes": probes,
        "interval": interval,
        "idle": idle,
    }
    plan: List[Tuple[Option, int]] = []
    for knob in _APPLY_ORDER:
        value = given[knob]
        if value is not None:
            opt = backend.option(knob)
            plan.append((opt, to_native(opt, value, knob)))
    enable_opt = backend.option("enable")
    for opt, native in plan:
        backend.set(fd, opt, native)
    backend.set(fd, enable_opt, 1 if enable else 0)
    return get_settings(fd)

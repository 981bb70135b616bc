"""Settings, the keepalive state of one socket, and the settings a new socket gets
(:func:`system_defaults`)."""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # no ``typing`` at run time: it is part of the import cost
if TYPE_CHECKING:
    from typing import List, NamedTuple, Optional

__all__ = ["Settings", "system_defaults"]


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
        from .constants import linux_kernel

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


def system_defaults() -> Settings:
    """The keepalive settings a new TCP socket gets on this system.

    ``enabled`` is ``False`` (keepalive is off until a program turns it
    on); times in ms.  Linux, macOS and the BSDs: what ``getsockopt``
    reports for a fresh ``AF_INET`` socket, which on Linux follows
    ``net.ipv4.tcp_keepalive_time/intvl/probes`` of the caller's network
    namespace and on macOS/FreeBSD the ``net.inet.tcp.keepidle/keepintvl/
    keepcnt`` sysctls.  Windows: the registry values ``KeepAliveTime`` and
    ``KeepAliveInterval`` (``HKLM\\...\\Tcpip\\Parameters``, ms), else their
    documented defaults (2 h, 1 s), and 10 probes; ``user_timeout`` is
    ``None`` there (no documented default value).  FreeBSD 14 and later:
    ``user_timeout`` is the ``net.inet.tcp.maxunacktime`` sysctl (ms, 0 = no
    limit), which a socket's ``TCP_MAXUNACKTIME`` of 0 stands for.  An option the platform
    lacks, or cannot report, or reports as never set (illumos' 0), is ``None``.  See
    :attr:`~netkeepalive.Settings.data_timeout` for how long unacknowledged
    data takes to fail.
    """
    import socket

    from . import _backends
    from ._common import VALUE_KNOBS
    from ._convert import public_value
    from ._defaults import (
        WINDOWS_KEEPALIVE_INTERVAL,
        WINDOWS_KEEPALIVE_PROBES,
        WINDOWS_KEEPALIVE_TIME,
        freebsd_maxunacktime,
        windows_value,
    )

    backend = _backends.backend()
    table = backend.table
    if table.name.startswith("win32"):
        return Settings(
            False,
            windows_value("KeepAliveTime", WINDOWS_KEEPALIVE_TIME),
            windows_value("KeepAliveInterval", WINDOWS_KEEPALIVE_INTERVAL),
            WINDOWS_KEEPALIVE_PROBES,
            None,
        )
    values: List[Optional[int]] = []
    try:
        fresh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:  # a system without IPv4
        fresh = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with fresh:
        fd = fresh.fileno()
        for opt in (table.option(k) for k in VALUE_KNOBS):
            if opt is None or not opt.readable:
                values.append(None)
                continue
            try:
                values.append(public_value(opt, backend.get(fd, opt)))
            except OSError:  # the kernel cannot report it for a fresh socket
                values.append(None)
    unack = table.user_timeout
    if values[3] == 0 and unack is not None and unack.name == "TCP_MAXUNACKTIME":
        values[3] = freebsd_maxunacktime()
    return Settings(False, *values)

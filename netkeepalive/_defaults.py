"""What the system does by default: registry and sysctl readers, the data timeout.

Two numbers decide how long a dead peer goes unnoticed when nothing is
configured: the keepalive settings a new TCP socket gets (idle connections)
and how long sent data may stay unacknowledged (connections with data in
flight).  On Linux both follow the ``net.ipv4`` sysctls of the network
namespace: ``tcp_keepalive_time/intvl/probes`` (7200 s, 75 s, 9: 7875 s)
and ``tcp_retries2`` (15: about 924.6 s).
"""

from __future__ import annotations

import sys
from typing import Optional

from .constants import linux_kernel

__all__ = [
    "LINUX_RTO_MAX",
    "LINUX_RTO_MIN",
    "WINDOWS_KEEPALIVE_INTERVAL",
    "WINDOWS_KEEPALIVE_PROBES",
    "WINDOWS_KEEPALIVE_TIME",
    "XNU_RETRANSMIT_LIMIT",
    "data_timeout",
    "default_data_timeout",
    "freebsd_maxunacktime",
    "linux_data_timeout",
    "windows_value",
]

#: ``TCP_RTO_MIN`` (include/net/tcp.h): the first retransmission timeout the
#: kernel's model of ``tcp_retries2`` starts from, ms.
LINUX_RTO_MIN = 200
#: ``TCP_RTO_MAX``: where the backoff stops doubling, ms.  Linux 6.15 and later
#: take it from ``net.ipv4.tcp_rto_max_ms`` (default the same 120 s).
LINUX_RTO_MAX = 120_000

#: How long xnu retransmits at most, in ms: it drops the connection when the
#: retransmit timer fires for the 13th time (``++t_rxtshift >
#: TCP_MAXRXTSHIFT``, 12, in bsd/netinet/tcp_timer.c tcp_timers), and each
#: timeout is at most ``TCPTV_REXMTMAX`` (64 s, bsd/netinet/tcp_timer.h).
#: ``TCP_RXT_CONNDROPTIME`` can only end retransmission earlier.
XNU_RETRANSMIT_LIMIT = (12 + 1) * 64_000

#: Where Windows keeps its TCP settings (under ``HKEY_LOCAL_MACHINE``).
WINDOWS_TCPIP_PARAMETERS = r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"
#: ``KeepAliveTime``'s documented default: two hours, in ms.
WINDOWS_KEEPALIVE_TIME = 7_200_000
#: ``KeepAliveInterval``'s documented default: one second, in ms.
WINDOWS_KEEPALIVE_INTERVAL = 1_000
#: Windows Vista and later send 10 probes ("SIO_KEEPALIVE_VALS control
#: code": "set to 10 and cannot be changed"; ``TCP_KEEPCNT`` from build
#: 15063 on changes it per socket only).
WINDOWS_KEEPALIVE_PROBES = 10

_PROC_SYS_IPV4 = "/proc/sys/net/ipv4/"


def linux_data_timeout(
    retries2: int, rto_max: int = LINUX_RTO_MAX, rto_min: int = LINUX_RTO_MIN
) -> int:
    """How long Linux retransmits unacknowledged data with user timeout 0, in ms.

    The kernel's own arithmetic (``tcp_model_timeout()`` in
    net/ipv4/tcp_timer.c): *retries2* + 1 retransmission timeouts starting
    at *rto_min* and doubling up to *rto_max*, i.e. the time the
    ``tcp_retries2``-th retransmission would take with the shortest RTO.
    It is counted from the retransmission timer's first retransmission
    (one RTO, and a tail-loss probe, after the data was sent), and the
    connection fails at the first retransmission due at or after it, so up
    to one backoff (at most *rto_max*) later.
    ``linux_data_timeout(15) == 924_600``.
    """
    threshold = (rto_max // rto_min).bit_length() - 1  # ilog2
    if retries2 <= threshold:
        return ((2 << retries2) - 1) * rto_min
    return ((2 << threshold) - 1) * rto_min + (retries2 - threshold) * rto_max


def data_timeout(user_timeout: Optional[int]) -> Optional[int]:
    """:attr:`~netkeepalive.Settings.data_timeout` for a socket with *user_timeout* (ms).

    macOS: ``TCP_RXT_CONNDROPTIME`` only cuts retransmission short, so the
    time is capped at :data:`XNU_RETRANSMIT_LIMIT`.
    """
    if user_timeout:
        if sys.platform in ("darwin", "ios"):
            return min(user_timeout, XNU_RETRANSMIT_LIMIT)
        return user_timeout
    return default_data_timeout()


def _sysctl(name: str) -> Optional[int]:
    """``/proc/sys/net/ipv4/<name>`` of the caller's network namespace, or ``None``."""
    try:
        with open(_PROC_SYS_IPV4 + name, encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def default_data_timeout() -> Optional[int]:
    """How long unacknowledged data takes to fail with user timeout 0, in ms.

    Linux: :func:`linux_data_timeout` of ``net.ipv4.tcp_retries2`` (and
    ``net.ipv4.tcp_rto_max_ms`` where the kernel has it) of the caller's
    network namespace, read now.  ``None`` on other systems, whose limit
    depends on the connection's round-trip time, and where the sysctl
    cannot be read.
    """
    if not linux_kernel():
        return None
    retries2 = _sysctl("tcp_retries2")
    if retries2 is None or retries2 < 0:
        return None
    rto_max = _sysctl("tcp_rto_max_ms")
    return linux_data_timeout(retries2, rto_max if rto_max and rto_max > 0 else LINUX_RTO_MAX)


def windows_value(name: str, default: int) -> int:
    """A ``REG_DWORD`` in ms under :data:`WINDOWS_TCPIP_PARAMETERS`, or *default*."""
    if sys.platform != "win32":
        return default
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, WINDOWS_TCPIP_PARAMETERS) as key:
            value, kind = winreg.QueryValueEx(key, name)
    except OSError:  # FileNotFoundError: not set, so the default applies
        return default
    if kind != winreg.REG_DWORD or not isinstance(value, int) or value < 1:
        return default
    return value


def freebsd_maxunacktime() -> Optional[int]:
    """FreeBSD: what a ``TCP_MAXUNACKTIME`` of 0 stands for, in ms.

    sys/netinet/tcp_timer.h TP_MAXUNACKTIME falls back to the
    ``net.inet.tcp.maxunacktime`` sysctl (ms, sysctl_msec_to_ticks in
    sys/netinet/tcp_timer.c; 0 = no limit).  ``None`` where it cannot be read.
    """
    from ._sysctl import sysctl_int

    value = sysctl_int("net.inet.tcp.maxunacktime")
    return value if value is not None and value >= 0 else None

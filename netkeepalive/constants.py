"""Layer 2: keepalive socket-option numbers, units and ranges, one table per OS.

Every number here is the value of a C macro from the operating system's
public headers.  Each :class:`PlatformTable` maps netkeepalive's five knobs
(``enable``, ``idle``, ``interval``, ``probes``, ``user_timeout``) to the
socket option that carries it on that system: its level, C name, number,
the unit the kernel expects and the range it accepts in that unit.

Looking for ``TCP_KEEPCNT`` on FreeBSD?  It is in :data:`FREEBSD` below.

The tables say *what* to pass; :mod:`netkeepalive._sys` says *how* (libc's
``setsockopt`` on Unix-likes, ``ws2_32`` on Windows), and
:func:`table_for` picks the table for the running system.
"""

from __future__ import annotations

import enum
import os
import re
import socket
import sys
from dataclasses import dataclass, replace
from typing import Optional, Tuple

__all__ = [
    "AIX",
    "ANDROID",
    "DARWIN",
    "DRAGONFLY",
    "DRAGONFLY_PRE_5_8",
    "FREEBSD",
    "ILLUMOS",
    "INT_MAX",
    "IPPROTO_TCP",
    "KNOBS",
    "LINUX",
    "NETBSD",
    "OPENBSD",
    "SIO_KEEPALIVE_VALS",
    "SIO_TCP_INFO",
    "SOLARIS",
    "SOLARIS_PRE_11_4",
    "TCP_KEEPALIVE_ABORT_THRESHOLD",
    "TCP_KEEPALIVE_THRESHOLD",
    "TCP_MAXRT",
    "TCP_MAXRTMS",
    "TCP_STATES",
    "UINT_MAX",
    "WINDOWS",
    "WINDOWS_BUILD_KEEPCNT",
    "WINDOWS_BUILD_KEEPIDLE",
    "WINDOWS_BUILD_MAXRTMS",
    "Option",
    "PlatformTable",
    "Unit",
    "detect_platform",
    "linux_table",
    "table_for",
    "windows_table",
]

#: Largest value a C ``int`` holds; nothing larger ever reaches ``setsockopt``.
INT_MAX = 2**31 - 1
#: Largest value a C ``unsigned int`` / Windows ``u_long`` holds.
UINT_MAX = 2**32 - 1
#: ``IPPROTO_TCP`` is 6 on every system listed here.
IPPROTO_TCP = 6

#: Linux's TCP states (``include/net/tcp_states.h``), number -> name: the
#: ``tcpi_state`` of ``TCP_INFO`` and the ``st`` column of ``/proc/net/tcp``.
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}


class Unit(enum.Enum):
    """The unit a kernel expects for an option's value."""

    FLAG = "flag"
    SECONDS = "s"
    MILLISECONDS = "ms"
    COUNT = "count"


@dataclass(frozen=True)
class Option:
    """One socket option as the C API knows it.

    ``minimum`` and ``maximum`` are in the option's own ``unit`` and are the
    values the kernel accepts (narrowed where netkeepalive's API is stricter,
    e.g. an idle time of 0 s is refused everywhere).
    """

    knob: str
    level: int
    name: str
    number: int
    unit: Unit
    minimum: int
    maximum: int
    #: Another option to use where this one is missing on the running system
    #: (e.g. ``TCP_KEEPALIVE_THRESHOLD`` on illumos before ``TCP_KEEPIDLE``).
    fallback: Optional[Option] = None
    #: ``False`` where the kernel cannot report the value back (Windows'
    #: ``SIO_KEEPALIVE_VALS``): getters raise and :func:`~netkeepalive.get_settings`
    #: reports ``None``.
    readable: bool = True


@dataclass(frozen=True)
class PlatformTable:
    """The keepalive options of one operating system; ``None`` = unsupported."""

    name: str
    enable: Optional[Option]
    idle: Optional[Option]
    interval: Optional[Option]
    probes: Optional[Option]
    user_timeout: Optional[Option]
    #: ``TCP_INFO`` (or its equivalent) where the system has one.
    tcp_info: Optional[int] = None
    #: The C name of :attr:`tcp_info` (``TCP_CONNECTION_INFO`` on macOS).
    tcp_info_name: str = "TCP_INFO"
    #: Related options no knob uses, listed so that every number this
    #: system defines for keepalive is in one place (and checked by the tests).
    extras: Tuple[Option, ...] = ()

    def option(self, knob: str) -> Optional[Option]:
        """The option carrying *knob* (``"idle"``, ``"probes"``, ...)."""
        opt: Optional[Option] = getattr(self, knob)
        return opt


KNOBS = ("enable", "idle", "interval", "probes", "user_timeout")

# BSD-heritage systems (macOS, the BSDs, Solaris, AIX, Windows) share these.
_BSD_SOL_SOCKET = 0xFFFF
_BSD_SO_KEEPALIVE = 0x0008


def _enable(level: int, number: int) -> Option:
    return Option("enable", level, "SO_KEEPALIVE", number, Unit.FLAG, 0, 1)


def _tcp(
    knob: str,
    name: str,
    number: int,
    unit: Unit,
    lo: int,
    hi: int,
    fallback: Optional[Option] = None,
) -> Option:
    return Option(knob, IPPROTO_TCP, name, number, unit, lo, hi, fallback)


# --------------------------------------------------------------------------
# Linux (and Android).  include/uapi/linux/tcp.h; ranges from net/ipv4/tcp.c
# (MAX_TCP_KEEPIDLE = MAX_TCP_KEEPINTVL = 32767 s, MAX_TCP_KEEPCNT = 127).
# SOL_SOCKET/SO_KEEPALIVE differ on mips, sparc, parisc and alpha.
# --------------------------------------------------------------------------
_LINUX_BSD_STYLE_ARCHES = ("mips", "sparc", "parisc", "hppa", "alpha")


def linux_table(machine: str = "", name: str = "linux") -> PlatformTable:
    """The Linux table for CPU architecture *machine* (``uname -m``)."""
    bsd_style = machine.lower().startswith(_LINUX_BSD_STYLE_ARCHES)
    sol_socket, so_keepalive = (_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE) if bsd_style else (1, 9)
    return PlatformTable(
        name=name,
        enable=_enable(sol_socket, so_keepalive),
        idle=_tcp("idle", "TCP_KEEPIDLE", 4, Unit.SECONDS, 1, 32767),
        interval=_tcp("interval", "TCP_KEEPINTVL", 5, Unit.SECONDS, 1, 32767),
        probes=_tcp("probes", "TCP_KEEPCNT", 6, Unit.COUNT, 1, 127),
        user_timeout=_tcp("user_timeout", "TCP_USER_TIMEOUT", 18, Unit.MILLISECONDS, 0, INT_MAX),
        tcp_info=11,
    )


LINUX = linux_table()
ANDROID = linux_table(name="android")

# --------------------------------------------------------------------------
# macOS / iOS (xnu bsd/netinet/tcp.h).  The idle option is TCP_KEEPALIVE;
# there is no TCP_KEEPIDLE.  xnu multiplies TCP_KEEPALIVE, TCP_KEEPINTVL and
# TCP_RXT_CONNDROPTIME by 1000 into a 32-bit field, so all three take at most
# UINT32_MAX/1000 s; TCP_KEEPCNT takes up to INT32_MAX.  TCP_RXT_CONNDROPTIME
# (seconds) is the user timeout; 0 means the system default.  TCP_INFO is
# private; TCP_CONNECTION_INFO (262, 10.11+) is the public equivalent.
# TCP_KEEPINTVL/TCP_KEEPCNT first appear in OS X 10.9 (xnu-2422).
# --------------------------------------------------------------------------
_XNU_MAX_SECONDS = UINT_MAX // 1000
DARWIN = PlatformTable(
    name="darwin",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    idle=_tcp("idle", "TCP_KEEPALIVE", 0x10, Unit.SECONDS, 1, _XNU_MAX_SECONDS),
    interval=_tcp("interval", "TCP_KEEPINTVL", 0x101, Unit.SECONDS, 1, _XNU_MAX_SECONDS),
    probes=_tcp("probes", "TCP_KEEPCNT", 0x102, Unit.COUNT, 1, INT_MAX),
    user_timeout=_tcp(
        "user_timeout", "TCP_RXT_CONNDROPTIME", 0x80, Unit.SECONDS, 0, _XNU_MAX_SECONDS
    ),
    tcp_info=0x106,
    tcp_info_name="TCP_CONNECTION_INFO",
)

# --------------------------------------------------------------------------
# FreeBSD (sys/netinet/tcp.h; tcp(4)).  u_int seconds, refused above
# UINT_MAX/hz (hz = 1000 by default).  No user-timeout option.
# --------------------------------------------------------------------------
FREEBSD = PlatformTable(
    name="freebsd",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    idle=_tcp("idle", "TCP_KEEPIDLE", 256, Unit.SECONDS, 1, UINT_MAX // 1000),
    interval=_tcp("interval", "TCP_KEEPINTVL", 512, Unit.SECONDS, 1, UINT_MAX // 1000),
    probes=_tcp("probes", "TCP_KEEPCNT", 1024, Unit.COUNT, 1, INT_MAX),
    user_timeout=None,
    tcp_info=32,
)

# --------------------------------------------------------------------------
# DragonFly BSD: FreeBSD's numbers.  Milliseconds before 5.8
# (__DragonFly_version < 500702), seconds from 5.8 on.  No TCP_INFO and no
# user timeout.
# --------------------------------------------------------------------------
DRAGONFLY = replace(FREEBSD, name="dragonfly", tcp_info=None)
DRAGONFLY_PRE_5_8 = replace(
    DRAGONFLY,
    name="dragonfly-pre-5.8",
    idle=_tcp("idle", "TCP_KEEPIDLE", 256, Unit.MILLISECONDS, 1, INT_MAX),
    interval=_tcp("interval", "TCP_KEEPINTVL", 512, Unit.MILLISECONDS, 1, INT_MAX),
)

# --------------------------------------------------------------------------
# NetBSD (sys/netinet/tcp.h; tcp(4): seconds, > 0).  No user timeout.
# Unverified on a current release: older kernels kept the value in 500 ms
# ticks and had no getsockopt for these options.
# --------------------------------------------------------------------------
NETBSD = PlatformTable(
    name="netbsd",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    idle=_tcp("idle", "TCP_KEEPIDLE", 3, Unit.SECONDS, 1, INT_MAX),
    interval=_tcp("interval", "TCP_KEEPINTVL", 5, Unit.SECONDS, 1, INT_MAX),
    probes=_tcp("probes", "TCP_KEEPCNT", 6, Unit.COUNT, 1, INT_MAX),
    user_timeout=None,
    tcp_info=9,
)

# --------------------------------------------------------------------------
# OpenBSD: SO_KEEPALIVE only; idle/interval/count are system-wide sysctls
# (net.inet.tcp.keepidle, ...), not socket options.
# --------------------------------------------------------------------------
OPENBSD = PlatformTable(
    name="openbsd",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    idle=None,
    interval=None,
    probes=None,
    user_timeout=None,
    tcp_info=9,
)

# --------------------------------------------------------------------------
# illumos and Solaris share sys.platform ("sunos5") but not the numbers.
# TCP_KEEPALIVE_THRESHOLD (22) is the older millisecond idle option,
# 10 s .. 10 days; TCP_KEEPALIVE_ABORT_THRESHOLD (23, ms, 0 = never) bounds
# the probing.  The newer TCP_KEEPIDLE/TCP_KEEPINTVL take seconds.
# --------------------------------------------------------------------------
_TEN_DAYS_S = 10 * 24 * 3600
TCP_KEEPALIVE_THRESHOLD = _tcp(
    "idle", "TCP_KEEPALIVE_THRESHOLD", 22, Unit.MILLISECONDS, 10_000, _TEN_DAYS_S * 1000
)
TCP_KEEPALIVE_ABORT_THRESHOLD = _tcp(
    "", "TCP_KEEPALIVE_ABORT_THRESHOLD", 23, Unit.MILLISECONDS, 0, INT_MAX
)

ILLUMOS = PlatformTable(
    name="illumos",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    # Where the running illumos lacks TCP_KEEPIDLE, the backend retries with
    # the millisecond threshold option.
    idle=_tcp("idle", "TCP_KEEPIDLE", 34, Unit.SECONDS, 1, _TEN_DAYS_S, TCP_KEEPALIVE_THRESHOLD),
    interval=_tcp("interval", "TCP_KEEPINTVL", 36, Unit.SECONDS, 1, _TEN_DAYS_S),
    probes=_tcp("probes", "TCP_KEEPCNT", 35, Unit.COUNT, 1, INT_MAX),
    user_timeout=None,
    extras=(TCP_KEEPALIVE_ABORT_THRESHOLD,),
)

SOLARIS = PlatformTable(
    name="solaris",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    idle=_tcp("idle", "TCP_KEEPIDLE", 29, Unit.SECONDS, 10, _TEN_DAYS_S),
    interval=_tcp("interval", "TCP_KEEPINTVL", 30, Unit.SECONDS, 10, _TEN_DAYS_S),
    probes=_tcp("probes", "TCP_KEEPCNT", 31, Unit.COUNT, 1, INT_MAX),
    user_timeout=None,
    extras=(TCP_KEEPALIVE_THRESHOLD, TCP_KEEPALIVE_ABORT_THRESHOLD),
)
#: Solaris before 11.4: only the millisecond threshold options exist.
SOLARIS_PRE_11_4 = replace(
    SOLARIS,
    name="solaris-pre-11.4",
    idle=TCP_KEEPALIVE_THRESHOLD,
    interval=None,
    probes=None,
    extras=(TCP_KEEPALIVE_ABORT_THRESHOLD,),
)

# --------------------------------------------------------------------------
# AIX (seconds, per golang/go and socket2; IBM's page was not checked).
# --------------------------------------------------------------------------
AIX = PlatformTable(
    name="aix",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    idle=_tcp("idle", "TCP_KEEPIDLE", 17, Unit.SECONDS, 1, INT_MAX),
    interval=_tcp("interval", "TCP_KEEPINTVL", 18, Unit.SECONDS, 1, INT_MAX),
    probes=_tcp("probes", "TCP_KEEPCNT", 19, Unit.COUNT, 1, INT_MAX),
    user_timeout=None,
)

# --------------------------------------------------------------------------
# Windows (ws2ipdef.h, mstcpip.h).  What exists depends on the build
# (sys.getwindowsversion().build):
#   16299+ (1709)  TCP_KEEPIDLE (an alias of TCP_KEEPALIVE, 3), TCP_KEEPINTVL, seconds
#   15063+ (1703)  TCP_KEEPCNT, at most 255
#   14393+ (1607)  TCP_MAXRTMS, milliseconds; before it TCP_MAXRT, seconds
# Before 16299 idle and interval go through WSAIoctl(SIO_KEEPALIVE_VALS):
# struct tcp_keepalive {u_long onoff, keepalivetime, keepaliveinterval}, in
# milliseconds, which cannot be read back.  Seconds options are capped so
# that the kernel's millisecond value fits a u_long, like the ioctl's.
# SIO_TCP_INFO is an ioctl, not a socket option, so ``tcp_info`` is None.
# --------------------------------------------------------------------------
SIO_KEEPALIVE_VALS = 0x98000004
SIO_TCP_INFO = 0xD8000027
#: Windows builds where an option first appears.
WINDOWS_BUILD_KEEPIDLE = 16299
WINDOWS_BUILD_KEEPCNT = 15063
WINDOWS_BUILD_MAXRTMS = 14393

TCP_MAXRT = _tcp("user_timeout", "TCP_MAXRT", 5, Unit.SECONDS, 0, INT_MAX)
TCP_MAXRTMS = _tcp("user_timeout", "TCP_MAXRTMS", 14, Unit.MILLISECONDS, 0, INT_MAX)
# WSAIoctl takes no level; 0 marks "not a socket option" for SIO_KEEPALIVE_VALS.
_SIO_KEEPALIVE_IDLE = Option(
    "idle",
    0,
    "SIO_KEEPALIVE_VALS",
    SIO_KEEPALIVE_VALS,
    Unit.MILLISECONDS,
    1,
    UINT_MAX,
    readable=False,
)
_SIO_KEEPALIVE_INTERVAL = replace(_SIO_KEEPALIVE_IDLE, knob="interval")


def windows_table(build: int) -> PlatformTable:
    """The Windows table for OS build number *build* (``sys.getwindowsversion().build``)."""
    modern = build >= WINDOWS_BUILD_KEEPIDLE
    return PlatformTable(
        name="win32" if modern else f"win32 (build {build})",
        enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
        idle=(
            _tcp("idle", "TCP_KEEPIDLE", 3, Unit.SECONDS, 1, UINT_MAX // 1000)
            if modern
            else _SIO_KEEPALIVE_IDLE
        ),
        interval=(
            _tcp("interval", "TCP_KEEPINTVL", 17, Unit.SECONDS, 1, UINT_MAX // 1000)
            if modern
            else _SIO_KEEPALIVE_INTERVAL
        ),
        probes=(
            _tcp("probes", "TCP_KEEPCNT", 16, Unit.COUNT, 1, 255)
            if build >= WINDOWS_BUILD_KEEPCNT
            else None
        ),
        user_timeout=TCP_MAXRTMS if build >= WINDOWS_BUILD_MAXRTMS else TCP_MAXRT,
        extras=(_tcp("idle", "TCP_KEEPALIVE", 3, Unit.SECONDS, 1, UINT_MAX // 1000),)
        if modern
        else (),
    )


WINDOWS = windows_table(WINDOWS_BUILD_KEEPIDLE)


# --------------------------------------------------------------------------
# Choosing the table for the running system.
# --------------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)(?:\.(\d+))?", text)
    if not m:
        return ()
    return tuple(int(part) for part in m.groups() if part is not None)


def detect_platform(
    platform: Optional[str] = None,
    release: Optional[str] = None,
    version: Optional[str] = None,
) -> str:
    """Name the table for a system: ``sys.platform`` plus ``uname`` details.

    Returns one of ``linux``, ``android``, ``darwin``, ``freebsd``,
    ``dragonfly``, ``dragonfly-pre-5.8``, ``netbsd``, ``openbsd``,
    ``illumos``, ``solaris``, ``solaris-pre-11.4``, ``aix``, ``win32``, or
    the ``sys.platform`` string itself for a system with no table.
    *release* and *version* default to ``os.uname()``'s.
    """
    plat = sys.platform if platform is None else platform
    if plat.startswith("linux"):
        return "linux"
    if plat == "android":
        return "android"
    if plat in ("darwin", "ios"):
        return "darwin"
    if plat == "win32":
        return "win32"
    if plat.startswith("aix"):
        return "aix"
    for bsd in ("freebsd", "netbsd", "openbsd"):
        if plat.startswith(bsd):
            return bsd
    if not plat.startswith(("dragonfly", "sunos")):
        return plat
    if release is None or version is None:
        uname = os.uname()
        release = uname.release if release is None else release
        version = uname.version if version is None else version
    if plat.startswith("dragonfly"):
        # uname -r: "5.8-RELEASE", "6.4-RELEASE", "5.7-DEVELOPMENT".
        return "dragonfly" if _version_tuple(release) >= (5, 8) else "dragonfly-pre-5.8"
    # illumos and Solaris both report release "5.11".  Solaris reports its
    # update as the uname version: "11.4.0.15.0", "11.3"; Solaris 10 and
    # OpenSolaris report "Generic_..." and "snv_...".  illumos distributions
    # report a build tag instead ("illumos-...", "omnios-...", "joyent_...").
    if version[:1].isdigit():
        return "solaris" if _version_tuple(version) >= (11, 4) else "solaris-pre-11.4"
    if version.startswith(("Generic", "snv_")) or release in ("5.10", "5.9", "5.8"):
        return "solaris-pre-11.4"
    return "illumos"


def _running_linux_table() -> PlatformTable:
    """Linux's table, with SOL_SOCKET/SO_KEEPALIVE as this interpreter knows them."""
    machine = os.uname().machine if hasattr(os, "uname") else ""
    table = linux_table(machine)
    level = getattr(socket, "SOL_SOCKET", None)
    number = getattr(socket, "SO_KEEPALIVE", None)
    if isinstance(level, int) and isinstance(number, int):
        table = replace(table, enable=_enable(level, number))
    return table


def _running_windows_table() -> PlatformTable:
    """Windows' table for the running build."""
    getwindowsversion = getattr(sys, "getwindowsversion", None)
    build = getwindowsversion().build if getwindowsversion is not None else 0
    return windows_table(int(build))


_TABLES = {
    "android": ANDROID,
    "darwin": DARWIN,
    "freebsd": FREEBSD,
    "dragonfly": DRAGONFLY,
    "dragonfly-pre-5.8": DRAGONFLY_PRE_5_8,
    "netbsd": NETBSD,
    "openbsd": OPENBSD,
    "illumos": ILLUMOS,
    "solaris": SOLARIS,
    "solaris-pre-11.4": SOLARIS_PRE_11_4,
    "aix": AIX,
    "win32": WINDOWS,
}


def table_for(name: Optional[str] = None) -> PlatformTable:
    """The option table for platform *name* (default: the running system).

    For the running system the table also reflects what only run time
    tells: the Linux CPU architecture, the Windows build.  Raises
    :class:`NotImplementedError` for a system with no table.
    """
    if name is None:
        name = detect_platform()
        if name == "linux":
            return _running_linux_table()
        if name == "win32":
            return _running_windows_table()
    if name == "linux":
        return LINUX
    try:
        return _TABLES[name]
    except KeyError:
        raise NotImplementedError(
            f"netkeepalive has no socket-option table for platform {name!r}"
        ) from None

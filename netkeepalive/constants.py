"""Layer 3: keepalive socket-option numbers, units and ranges, one table per OS.

Every number here is the value of a C macro from the operating system's
public headers.  Each :class:`PlatformTable` maps netkeepalive's five knobs
(``enable``, ``idle``, ``interval``, ``probes``, ``user_timeout``) to the
socket option that carries it on that system: its level, C name, number,
the unit the kernel expects and the range it accepts in that unit.

Looking for ``TCP_KEEPCNT`` on FreeBSD?  It is in :data:`FREEBSD` below.

The tables say *what* to pass; :mod:`netkeepalive._backends` says *how* (libc's
``setsockopt`` on Unix-likes, ``ws2_32`` on Windows), and
:func:`table_for` picks the table for the running system.
"""

from __future__ import annotations

import enum
import os
import socket
import sys
from dataclasses import dataclass, replace
from typing import FrozenSet, Optional, Tuple

from ._common import KNOBS, version_tuple

__all__ = [
    "AIX",
    "ANDROID",
    "DARWIN",
    "DRAGONFLY",
    "DRAGONFLY_PRE_5_8",
    "FREEBSD",
    "FREEBSD_PRE_14",
    "ILLUMOS",
    "ILLUMOS_TCP_RTO_MAX",
    "ILLUMOS_TCP_RTO_MIN",
    "INT_MAX",
    "IPPROTO_TCP",
    "KNOBS",
    "LINUX",
    "NETBSD",
    "NETBSD_PRE_8",
    "OPENBSD",
    "SIO_KEEPALIVE_VALS",
    "SIO_TCP_INFO",
    "SOLARIS",
    "SOLARIS_PRE_11_4",
    "TCP_KEEPALIVE_ABORT_THRESHOLD",
    "TCP_KEEPALIVE_THRESHOLD",
    "TCP_MAXRT",
    "TCP_MAXRTMS",
    "TCP_MAXUNACKTIME",
    "TCP_STATES",
    "UINT_MAX",
    "WINDOWS",
    "WINDOWS_BUILD_KEEPCNT",
    "WINDOWS_BUILD_KEEPCNT_READABLE",
    "WINDOWS_BUILD_KEEPIDLE",
    "WINDOWS_BUILD_MAXRTMS",
    "Option",
    "PlatformTable",
    "Unit",
    "detect_platform",
    "freebsd_table",
    "generic_table",
    "linux_kernel",
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
    #: 500 ms ticks of a BSD slow timer (``PR_SLOWHZ`` = 2): NetBSD stores
    #: its keepalive options unscaled in such ticks.
    HALF_SECONDS = "500 ms ticks"
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
    #: ``True`` where the kernel reads back 0 for an option never set on the
    #: socket (illumos ``TCP_KEEPINTVL``/``TCP_KEEPCNT``): 0 then means
    #: "not set", and :func:`~netkeepalive.get_settings` reports ``None``.
    zero_is_unset: bool = False
    #: What else bounds the value, for the message of a kernel ``EINVAL``
    #: (a tunable the library cannot know, e.g. illumos' retransmit bounds).
    einval_hint: str = ""


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
    #: The knobs an accepted socket inherits from its listening socket, as
    #: checked on real sockets by the test suite (tests/integrations/test_servers.py):
    #: Linux copies all five to every connection whose handshake completes after
    #: the listener was configured.  Unchecked elsewhere: each connection is configured.
    inherited: FrozenSet[str] = frozenset()

    def option(self, knob: str) -> Optional[Option]:
        """The option carrying *knob* (``"idle"``, ``"probes"``, ...)."""
        opt: Optional[Option] = getattr(self, knob)
        return opt


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
    *,
    zero_is_unset: bool = False,
    einval_hint: str = "",
) -> Option:
    return Option(
        knob,
        IPPROTO_TCP,
        name,
        number,
        unit,
        lo,
        hi,
        fallback,
        zero_is_unset=zero_is_unset,
        einval_hint=einval_hint,
    )


# Every row below names where its number, unit and range come from: the
# header that defines the number and the kernel function (or documentation
# page) that enforces the unit and range.  The numbers are also checked
# against tests/data/tcp-keepalive-constants.tsv by the test suite.

# --------------------------------------------------------------------------
# Linux (and Android).  SOL_SOCKET/SO_KEEPALIVE differ on mips, sparc,
# parisc and alpha (arch/*/include/uapi/asm/socket.h).
# --------------------------------------------------------------------------
_LINUX_BSD_STYLE_ARCHES = ("mips", "sparc", "parisc", "hppa", "alpha")


def linux_table(machine: str = "", name: str = "linux") -> PlatformTable:
    """The Linux table for CPU architecture *machine* (``uname -m``)."""
    bsd_style = machine.lower().startswith(_LINUX_BSD_STYLE_ARCHES)
    sol_socket, so_keepalive = (_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE) if bsd_style else (1, 9)
    return PlatformTable(
        name=name,
        # include/uapi/asm-generic/socket.h; net/core/sock.c sk_setsockopt.
        enable=_enable(sol_socket, so_keepalive),
        # include/uapi/linux/tcp.h; net/ipv4/tcp.c do_tcp_setsockopt ->
        # tcp_sock_set_keepidle_locked: 1..MAX_TCP_KEEPIDLE (32767) s.
        idle=_tcp("idle", "TCP_KEEPIDLE", 4, Unit.SECONDS, 1, 32767),
        # net/ipv4/tcp.c tcp_sock_set_keepintvl: 1..MAX_TCP_KEEPINTVL (32767) s.
        interval=_tcp("interval", "TCP_KEEPINTVL", 5, Unit.SECONDS, 1, 32767),
        # net/ipv4/tcp.c tcp_sock_set_keepcnt: 1..MAX_TCP_KEEPCNT (127).
        probes=_tcp("probes", "TCP_KEEPCNT", 6, Unit.COUNT, 1, 127),
        # net/ipv4/tcp.c do_tcp_setsockopt: ms >= 0, 0 = system default.
        user_timeout=_tcp("user_timeout", "TCP_USER_TIMEOUT", 18, Unit.MILLISECONDS, 0, INT_MAX),
        tcp_info=11,  # include/uapi/linux/tcp.h
        inherited=frozenset(KNOBS) if name == "linux" else frozenset(),
    )


LINUX = linux_table()
ANDROID = linux_table(name="android")

# --------------------------------------------------------------------------
# macOS / iOS (apple-oss-distributions/xnu).  The idle option is
# TCP_KEEPALIVE; there is no TCP_KEEPIDLE.  Order matters here: setting
# TCP_KEEPALIVE re-arms the keepalive timer with TCP_CONN_KEEPIDLE(tp),
# which uses the per-socket idle only while SO_KEEPALIVE is on
# (bsd/netinet/tcp_timer.h), and SO_KEEPALIVE re-arms nothing
# (bsd/kern/uipc_socket.c sosetoptlock), so netkeepalive writes the idle
# time after SO_KEEPALIVE=1.  TCP_KEEPINTVL/TCP_KEEPCNT first appear in
# xnu-2422 (OS X 10.9).  TCP_INFO is private; TCP_CONNECTION_INFO (10.11+)
# is the public equivalent.
# --------------------------------------------------------------------------
_XNU_MAX_SECONDS = UINT_MAX // 1000
DARWIN = PlatformTable(
    name="darwin",
    # bsd/sys/socket.h
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    # bsd/netinet/tcp.h; bsd/netinet/tcp_usrreq.c tcp_ctloutput: seconds,
    # stored x1000 (TCP_RETRANSHZ) in a u_int32 -> at most UINT32_MAX/1000 s.
    idle=_tcp("idle", "TCP_KEEPALIVE", 0x10, Unit.SECONDS, 1, _XNU_MAX_SECONDS),
    # bsd/netinet/tcp.h; tcp_usrreq.c tcp_ctloutput: as TCP_KEEPALIVE.
    interval=_tcp("interval", "TCP_KEEPINTVL", 0x101, Unit.SECONDS, 1, _XNU_MAX_SECONDS),
    # bsd/netinet/tcp.h; tcp_usrreq.c tcp_ctloutput: 0..INT32_MAX.
    probes=_tcp("probes", "TCP_KEEPCNT", 0x102, Unit.COUNT, 1, INT_MAX),
    # bsd/netinet/tcp.h; tcp_usrreq.c tcp_ctloutput: seconds, 0 = default.
    user_timeout=_tcp(
        "user_timeout", "TCP_RXT_CONNDROPTIME", 0x80, Unit.SECONDS, 0, _XNU_MAX_SECONDS
    ),
    tcp_info=0x106,  # bsd/netinet/tcp.h
    tcp_info_name="TCP_CONNECTION_INFO",
)

# --------------------------------------------------------------------------
# FreeBSD (freebsd/freebsd-src).  sys/netinet/tcp_usrreq.c
# tcp_default_ctloutput takes u_int seconds for TCP_KEEPIDLE, TCP_KEEPINTVL
# and (14.0+) TCP_MAXUNACKTIME, refuses values above UINT_MAX/hz (hz = 1000
# by default; the running kernel's comes from sysctl kern.hz, see
# freebsd_table) and re-arms the keepalive timer on TCP_KEEPIDLE whatever
# SO_KEEPALIVE says; the timer checks SO_KEEPALIVE when it fires
# (sys/netinet/tcp_timer.c tcp_timer_keep).  tcp(4) documents the units.
# A TCP_MAXUNACKTIME of 0 means "use sysctl net.inet.tcp.maxunacktime"
# (sys/netinet/tcp_timer.h TP_MAXUNACKTIME), whose default 0 is no limit.
# --------------------------------------------------------------------------
_FREEBSD_HZ = 1000
_FREEBSD_MAX_SECONDS = UINT_MAX // _FREEBSD_HZ
#: sys/netinet/tcp.h (68); sys/netinet/tcp_timer.c tcp_maxunacktime_check
#: drops a connection whose sent data stayed unacknowledged that long;
#: sys/compat/linux/linux_socket.c maps Linux TCP_USER_TIMEOUT onto it.
#: FreeBSD 14.0 and later; 0 (the default) = no limit.
TCP_MAXUNACKTIME = _tcp(
    "user_timeout", "TCP_MAXUNACKTIME", 68, Unit.SECONDS, 0, _FREEBSD_MAX_SECONDS
)
FREEBSD = PlatformTable(
    name="freebsd",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),  # sys/sys/socket.h
    # sys/netinet/tcp.h (256); tcp_default_ctloutput: ui > UINT_MAX/hz -> EINVAL.
    idle=_tcp("idle", "TCP_KEEPIDLE", 256, Unit.SECONDS, 1, _FREEBSD_MAX_SECONDS),
    # sys/netinet/tcp.h (512); tcp_default_ctloutput, as TCP_KEEPIDLE.
    interval=_tcp("interval", "TCP_KEEPINTVL", 512, Unit.SECONDS, 1, _FREEBSD_MAX_SECONDS),
    # sys/netinet/tcp.h (1024); tcp_default_ctloutput: any u_int.
    probes=_tcp("probes", "TCP_KEEPCNT", 1024, Unit.COUNT, 1, INT_MAX),
    user_timeout=TCP_MAXUNACKTIME,
    tcp_info=32,  # sys/netinet/tcp.h
)
#: FreeBSD before 14.0: no TCP_MAXUNACKTIME, so no user timeout.
FREEBSD_PRE_14 = replace(FREEBSD, name="freebsd-pre-14", user_timeout=None)


def freebsd_table(table: PlatformTable, hz: int) -> PlatformTable:
    """*table* (:data:`FREEBSD` or :data:`FREEBSD_PRE_14`) for a kernel ticking *hz* times a second.

    tcp_default_ctloutput refuses seconds above ``UINT_MAX / hz``, so the
    ceiling of every seconds option follows ``kern.hz``.
    """
    if hz <= 0 or hz == _FREEBSD_HZ:
        return table
    ceiling = UINT_MAX // hz

    def capped(opt: Optional[Option]) -> Optional[Option]:
        if opt is None or opt.unit is not Unit.SECONDS:
            return opt
        return replace(opt, maximum=ceiling)

    return replace(
        table,
        idle=capped(table.idle),
        interval=capped(table.interval),
        user_timeout=capped(table.user_timeout),
    )


# --------------------------------------------------------------------------
# DragonFly BSD (DragonFlyBSD/DragonFlyBSD): FreeBSD's numbers
# (sys/netinet/tcp.h).  Seconds from 5.8 on (libuv/libuv src/unix/tcp.c,
# curl/curl lib/cf-socket.c, golang/go issue 65809; the 5.8 source itself
# was not read here); before 5.8 (__DragonFly_version < 500702)
# sys/netinet/tcp_usrreq.c tcp_ctloutput converts milliseconds to ticks
# (ms * hz / 1000) and refuses a value that rounds to 0 ticks with EINVAL.
# hz is 100 by default there, so netkeepalive refuses anything under one
# 10 ms tick itself; values read back in whole ticks.  No TCP_INFO and no user timeout.
# --------------------------------------------------------------------------
DRAGONFLY = replace(FREEBSD_PRE_14, name="dragonfly", tcp_info=None)
_DRAGONFLY_TICK_MS = 10
DRAGONFLY_PRE_5_8 = replace(
    DRAGONFLY,
    name="dragonfly-pre-5.8",
    idle=_tcp("idle", "TCP_KEEPIDLE", 256, Unit.MILLISECONDS, _DRAGONFLY_TICK_MS, INT_MAX),
    interval=_tcp("interval", "TCP_KEEPINTVL", 512, Unit.MILLISECONDS, _DRAGONFLY_TICK_MS, INT_MAX),
)

# --------------------------------------------------------------------------
# NetBSD (NetBSD/src).  sys/netinet/tcp.h gives the numbers; tcp(4) says
# seconds, but sys/netinet/tcp_usrreq.c tcp_ctloutput stores the value
# unscaled in t_keepidle/t_keepintvl, which sys/netinet/tcp_timer.h arms as
# PR_SLOWHZ (2 per second) slow-timer ticks (TCP_TIMER_ARM: nticks *
# (hz / PR_SLOWHZ)): a value is 500 ms ticks, and any value > 0 is taken.
# Read: tcp_usrreq.c rev 1.209 (2015, HEAD a year after netbsd-7
# branched, so NetBSD 7 has no more): PRCO_GETOPT answers none of the
# three (ENOPROTOOPT).  Rev 1.214.6.1 (2017, the netbsd-8 branch): the same
# set path, and PRCO_GETOPT returns the stored t_keepidle, t_keepintvl and
# t_keepcnt, i.e. the same ticks.  tcp_timer.h rev 1.30.34.1 (2026, a
# release branch) still arms TCP_TIMER_ARM in slow ticks.  So NetBSD 8 and
# later read the options back (in ticks) and earlier releases do not;
# tcp_usrreq.c after 2017 (NetBSD 9, 10) was not available here:
# unverified there.  change_keepalive() re-arms the timer with t_keepintvl
# when an option is set while SO_KEEPALIVE is on, so the idle write after
# SO_KEEPALIVE=1 brings one probe forward to the interval (tcp_timer.c
# tcp_timer_keep); the peer's answer re-arms the idle time.  The ceiling
# keeps ticks * (hz / PR_SLOWHZ) inside an int for hz <= 1000.
# No user timeout.
# --------------------------------------------------------------------------
_NETBSD_MAX_TICKS = INT_MAX // 500
_NETBSD_IDLE = _tcp("idle", "TCP_KEEPIDLE", 3, Unit.HALF_SECONDS, 1, _NETBSD_MAX_TICKS)
_NETBSD_INTERVAL = _tcp("interval", "TCP_KEEPINTVL", 5, Unit.HALF_SECONDS, 1, _NETBSD_MAX_TICKS)
_NETBSD_PROBES = _tcp("probes", "TCP_KEEPCNT", 6, Unit.COUNT, 1, INT_MAX)
NETBSD = PlatformTable(
    name="netbsd",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),  # sys/sys/socket.h
    idle=_NETBSD_IDLE,
    interval=_NETBSD_INTERVAL,
    probes=_NETBSD_PROBES,
    user_timeout=None,
    tcp_info=9,  # sys/netinet/tcp.h
)
#: NetBSD before 8.0: the same options, but getsockopt answers none of them.
NETBSD_PRE_8 = replace(
    NETBSD,
    name="netbsd-pre-8",
    idle=replace(_NETBSD_IDLE, readable=False),
    interval=replace(_NETBSD_INTERVAL, readable=False),
    probes=replace(_NETBSD_PROBES, readable=False),
)

# --------------------------------------------------------------------------
# OpenBSD (openbsd/src sys/netinet/tcp.h): SO_KEEPALIVE only; idle,
# interval and count are system-wide sysctls (net.inet.tcp.keepidle, ...).
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
# illumos (illumos/illumos-gate) and Solaris share sys.platform ("sunos5")
# but not the numbers.  illumos: usr/src/uts/common/netinet/tcp.h;
# usr/src/uts/common/inet/tcp/tcp_opt_data.c tcp_opt_set checks
# TCP_KEEPIDLE x 1000 and TCP_KEEPALIVE_THRESHOLD against the
# _keepalive_interval tunable's fixed bounds, which since OS-4686 (2015,
# usr/src/uts/common/inet/tcp/tcp_tunables.c: {1*SECONDS, 10*DAYS}) are
# 1 s .. 10 days (10 s .. 10 days before it, as Solaris still has).
# TCP_KEEPINTVL x 1000 must lie within the connection's retransmit bounds
# tcp_rto_min .. tcp_rto_max (from the tunables _rexmit_interval_min/_max,
# defaults 400 ms and 60 s, each settable up to 2 hours; per socket with
# TCP_RTO_MIN/TCP_RTO_MAX), so the table's ceiling for it is 2 hours and
# the backend reads the socket's TCP_RTO_MIN/TCP_RTO_MAX (tcp_opt_get
# answers both, in ms) before writing it.  TCP_KEEPCNT x TCP_KEEPINTVL
# must lie within _keepalive_abort_interval's bounds (tunables), which
# only the kernel knows.  Unset TCP_KEEPINTVL/TCP_KEEPCNT read back as 0.
# --------------------------------------------------------------------------
_TEN_DAYS_S = 10 * 24 * 3600
#: usr/src/uts/common/netinet/tcp.h: the connection's retransmit bounds, in
#: ms (tcp_opt_data.c tcp_opt_get returns tcp_rto_min / tcp_rto_max).
ILLUMOS_TCP_RTO_MIN = 0x1A
ILLUMOS_TCP_RTO_MAX = 0x1B
#: tcp_tunables.c _rexmit_interval_max: at most 2 hours, in seconds.
_ILLUMOS_RTO_CEILING_S = 2 * 3600
TCP_KEEPALIVE_THRESHOLD = _tcp(
    "idle", "TCP_KEEPALIVE_THRESHOLD", 22, Unit.MILLISECONDS, 1_000, _TEN_DAYS_S * 1000
)
_SOLARIS_KEEPALIVE_THRESHOLD = replace(TCP_KEEPALIVE_THRESHOLD, minimum=10_000)
TCP_KEEPALIVE_ABORT_THRESHOLD = _tcp(
    "", "TCP_KEEPALIVE_ABORT_THRESHOLD", 23, Unit.MILLISECONDS, 0, INT_MAX
)
_ILLUMOS_RTO_HINT = (
    "illumos takes TCP_KEEPINTVL only within the connection's retransmit "
    "bounds TCP_RTO_MIN..TCP_RTO_MAX (by default 400 ms to 60 s, from the tcp "
    "tunables _rexmit_interval_min and _rexmit_interval_max; see ipadm "
    "show-prop -p _rexmit_interval_max tcp), and TCP_KEEPINTVL x TCP_KEEPCNT "
    "only within _keepalive_abort_interval's range"
)
_ILLUMOS_COUNT_HINT = (
    "illumos takes TCP_KEEPCNT x TCP_KEEPINTVL only within the tcp tunable "
    "_keepalive_abort_interval's range"
)

ILLUMOS = PlatformTable(
    name="illumos",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    # tcp_opt_data.c tcp_opt_set: seconds x 1000 within 1 s .. 10 days
    # (tcp_tunables.c _keepalive_interval, OS-4686).  Where the running
    # illumos lacks TCP_KEEPIDLE, the backend retries with the millisecond
    # threshold option (same range, in ms).
    idle=_tcp("idle", "TCP_KEEPIDLE", 34, Unit.SECONDS, 1, _TEN_DAYS_S, TCP_KEEPALIVE_THRESHOLD),
    # tcp_opt_data.c tcp_opt_set: seconds x 1000 within the connection's
    # tcp_rto_min .. tcp_rto_max (default 0.4 .. 60 s; at most 2 hours).
    interval=_tcp(
        "interval",
        "TCP_KEEPINTVL",
        36,
        Unit.SECONDS,
        1,
        _ILLUMOS_RTO_CEILING_S,
        zero_is_unset=True,
        einval_hint=_ILLUMOS_RTO_HINT,
    ),
    # tcp_opt_data.c tcp_opt_set: 0 is EINVAL.
    probes=_tcp(
        "probes",
        "TCP_KEEPCNT",
        35,
        Unit.COUNT,
        1,
        INT_MAX,
        zero_is_unset=True,
        einval_hint=_ILLUMOS_COUNT_HINT,
    ),
    user_timeout=None,
    extras=(TCP_KEEPALIVE_ABORT_THRESHOLD,),
)

# Solaris 11.4: Oracle's tcp(4P) as quoted in libuv/libuv src/unix/tcp.c
# (seconds, 10 s .. 10 days; OS-4686's 1 s is illumos only).  Weak
# evidence: no Solaris source is public, and Oracle's page itself was not
# read here.
SOLARIS = PlatformTable(
    name="solaris",
    enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),
    idle=_tcp("idle", "TCP_KEEPIDLE", 29, Unit.SECONDS, 10, _TEN_DAYS_S),
    interval=_tcp("interval", "TCP_KEEPINTVL", 30, Unit.SECONDS, 10, _TEN_DAYS_S),
    probes=_tcp("probes", "TCP_KEEPCNT", 31, Unit.COUNT, 1, INT_MAX),
    user_timeout=None,
    extras=(_SOLARIS_KEEPALIVE_THRESHOLD, TCP_KEEPALIVE_ABORT_THRESHOLD),
)
#: Solaris before 11.4: only the millisecond threshold options exist.
SOLARIS_PRE_11_4 = replace(
    SOLARIS,
    name="solaris-pre-11.4",
    idle=_SOLARIS_KEEPALIVE_THRESHOLD,
    interval=None,
    probes=None,
    extras=(TCP_KEEPALIVE_ABORT_THRESHOLD,),
)

# --------------------------------------------------------------------------
# AIX: numbers from rust-lang/libc only; seconds per golang/go
# src/net/tcpsockopt_unix.go and rust-lang/socket2.  Weak evidence: IBM's
# setsockopt page was not read and no AIX source is public (AIX's system
# tunables for the same settings are in half-seconds).
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
# Windows (mingw-w64 headers ws2ipdef.h and mstcpip.h for the numbers;
# Microsoft's "IPPROTO_TCP socket options" page for units and versions).
# What exists depends on the build of the running kernel (RtlGetVersion;
# see netkeepalive._backends.windows.kernel_build):
#   16299+ (1709)  TCP_KEEPIDLE (an alias of TCP_KEEPALIVE, 3), TCP_KEEPINTVL, seconds
#   15063+ (1703)  TCP_KEEPCNT, at most 255; read back only from 16299 on:
#                  before that the times go through SIO_KEEPALIVE_VALS, whose
#                  effect on the count is undocumented (the ioctl's page says
#                  the count is fixed; libuv avoids TCP_KEEPCNT there), so
#                  the count read back is not reported as the one in force
#   14393+ (1607)  TCP_MAXRTMS, milliseconds; before it TCP_MAXRT, seconds
# Before 16299 idle and interval go through WSAIoctl(SIO_KEEPALIVE_VALS):
# struct tcp_keepalive {u_long onoff, keepalivetime, keepaliveinterval}, in
# milliseconds, which cannot be read back.  Seconds options are capped so
# that the kernel's millisecond value fits a u_long, like the ioctl's.
# TCP_MAXRT: Microsoft's page says a non-negative value is the connection
# timeout in seconds and -1 disables it (retransmit forever); TCP_MAXRTMS
# is not on the page.  No value is documented to restore the system
# default, so 0 (a zero-second timeout as written) is refused (minimum 1).
# SIO_TCP_INFO is an ioctl, not a socket option, so ``tcp_info`` is None.
# --------------------------------------------------------------------------
SIO_KEEPALIVE_VALS = 0x98000004  # mstcpip.h _WSAIOW(IOC_VENDOR, 4)
SIO_TCP_INFO = 0xD8000027  # mstcpip.h _WSAIORW(IOC_VENDOR, 39)
#: Windows builds where an option first appears.
WINDOWS_BUILD_KEEPIDLE = 16299
WINDOWS_BUILD_KEEPCNT = 15063
#: From this build on, the probe count read back is the one in force (no
#: SIO_KEEPALIVE_VALS after TCP_KEEPCNT): the build of TCP_KEEPIDLE.
WINDOWS_BUILD_KEEPCNT_READABLE = WINDOWS_BUILD_KEEPIDLE
WINDOWS_BUILD_MAXRTMS = 14393

# ws2ipdef.h TCP_MAXRT = 5 (seconds) and TCP_MAXRTMS = 14 (milliseconds, build
# 14393+; cygwin winsup/cygwin/wincap.cc); 1 and up, see the block comment.
TCP_MAXRT = _tcp("user_timeout", "TCP_MAXRT", 5, Unit.SECONDS, 1, INT_MAX)
TCP_MAXRTMS = _tcp("user_timeout", "TCP_MAXRTMS", 14, Unit.MILLISECONDS, 1, INT_MAX)
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
    """The Windows table for OS build number *build* (the kernel's, see ``table_for``)."""
    modern = build >= WINDOWS_BUILD_KEEPIDLE
    return PlatformTable(
        name="win32" if modern else f"win32 (build {build})",
        enable=_enable(_BSD_SOL_SOCKET, _BSD_SO_KEEPALIVE),  # winsock2.h
        idle=(
            # ws2ipdef.h TCP_KEEPIDLE = TCP_KEEPALIVE = 3, seconds.
            _tcp("idle", "TCP_KEEPIDLE", 3, Unit.SECONDS, 1, UINT_MAX // 1000)
            if modern
            else _SIO_KEEPALIVE_IDLE
        ),
        interval=(
            # ws2ipdef.h TCP_KEEPINTVL = 17, seconds.
            _tcp("interval", "TCP_KEEPINTVL", 17, Unit.SECONDS, 1, UINT_MAX // 1000)
            if modern
            else _SIO_KEEPALIVE_INTERVAL
        ),
        probes=(
            # ws2ipdef.h TCP_KEEPCNT = 16; Microsoft: at most 255.
            replace(
                _tcp("probes", "TCP_KEEPCNT", 16, Unit.COUNT, 1, 255),
                readable=build >= WINDOWS_BUILD_KEEPCNT_READABLE,
            )
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
#: BSD ``sys.platform`` prefix -> the kernel version number (``sysctl
#: kern.osreldate``/``kern.osrevision``, see :mod:`netkeepalive._sysctl`)
#: from which its newer table applies:
#: FreeBSD: __FreeBSD_version 1400000 (sys/sys/param.h), 14.0 with
#: TCP_MAXUNACKTIME.  NetBSD: __NetBSD_Version__ 800000000 (sys/sys/param.h,
#: MMmmrrpp00: 8.0), whose tcp_usrreq.c (netbsd-8 branch, rev 1.214.6.1)
#: answers getsockopt.  DragonFly: __DragonFly_version 500702 (sys/sys/param.h),
#: where TCP_KEEPIDLE/TCP_KEEPINTVL became seconds (libuv src/unix/tcp.c
#: tests the same number), so 5.7-DEVELOPMENT kernels at or past it count.
_BY_VERSION = {
    "freebsd": 1_400_000,
    "netbsd": 800_000_000,
    "dragonfly": 500_702,
}
#: The same split by ``uname -r`` (first release of the newer table, the
#: table before it): the fallback where the sysctl cannot be read.
_BY_RELEASE = {
    # "14.1-RELEASE", "13.3-STABLE"; TCP_MAXUNACKTIME is 14.0+.
    "freebsd": ((14,), "freebsd-pre-14"),
    # "10.0", "9.3", "7.2"; getsockopt answers from 8.0 on.
    "netbsd": ((8,), "netbsd-pre-8"),
    # "5.8-RELEASE", "6.4-RELEASE", "5.7-DEVELOPMENT".
    "dragonfly": ((5, 8), "dragonfly-pre-5.8"),
}


def _kernel_version(platform: str) -> Optional[int]:
    """The running BSD kernel's version number, or ``None`` (use ``uname``)."""
    from ._sysctl import kernel_version

    number = kernel_version(platform)
    return number if number is not None and number > 0 else None


def linux_kernel() -> bool:
    """Whether this process runs on a Linux kernel (Android included)."""
    return sys.platform.startswith("linux") or sys.platform == "android"


def detect_platform(
    platform: Optional[str] = None,
    release: Optional[str] = None,
    version: Optional[str] = None,
    osversion: Optional[int] = None,
) -> str:
    """Name the table for a system: ``sys.platform`` plus the kernel's version.

    Returns one of ``linux``, ``android``, ``darwin``, ``freebsd``,
    ``freebsd-pre-14``, ``dragonfly``, ``dragonfly-pre-5.8``, ``netbsd``,
    ``netbsd-pre-8``, ``openbsd``, ``illumos``, ``solaris``,
    ``solaris-pre-11.4``, ``aix``, ``win32``, or
    the ``sys.platform`` string itself for a system with no table.
    On FreeBSD, DragonFly and NetBSD the kernel's version number decides
    (*osversion*; by default, when *release* is not given, the running
    kernel's ``kern.osreldate``/``kern.osrevision``), and ``uname -r``
    only where that cannot be read.  *release* and *version* default to
    ``os.uname()``'s.
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
    if plat.startswith("openbsd"):
        return "openbsd"
    if not plat.startswith((*_BY_RELEASE, "sunos")):
        return plat
    if osversion is None and release is None and not plat.startswith("sunos"):
        osversion = _kernel_version(plat)
    if osversion is not None:
        for bsd, first_number in _BY_VERSION.items():
            if plat.startswith(bsd):
                return bsd if osversion >= first_number else _BY_RELEASE[bsd][1]
    if release is None or version is None:
        uname = os.uname()
        release = uname.release if release is None else release
        version = uname.version if version is None else version
    for bsd, (first, older) in _BY_RELEASE.items():
        if plat.startswith(bsd):
            return bsd if version_tuple(release) >= first else older
    # illumos and Solaris both report release "5.11".  Solaris reports its
    # update as the uname version: "11.4.0.15.0", "11.3"; Solaris 10 and
    # OpenSolaris report "Generic_..." and "snv_...".  illumos distributions
    # report a build tag instead ("illumos-...", "omnios-...", "joyent_...").
    if version[:1].isdigit():
        return "solaris" if version_tuple(version) >= (11, 4) else "solaris-pre-11.4"
    if version.startswith(("Generic", "snv_")) or release in ("5.10", "5.9", "5.8"):
        return "solaris-pre-11.4"
    return "illumos"


def _interpreter_enable() -> Optional[Option]:
    """``SO_KEEPALIVE`` as this interpreter's :mod:`socket` knows it, if it does."""
    level = getattr(socket, "SOL_SOCKET", None)
    number = getattr(socket, "SO_KEEPALIVE", None)
    if isinstance(level, int) and isinstance(number, int):
        return _enable(level, number)
    return None


def _running_linux_table() -> PlatformTable:
    """Linux's table, with SOL_SOCKET/SO_KEEPALIVE as this interpreter knows them."""
    machine = os.uname().machine if hasattr(os, "uname") else ""
    table = linux_table(machine)
    enable = _interpreter_enable()
    return table if enable is None else replace(table, enable=enable)


def _running_freebsd_table(table: PlatformTable) -> PlatformTable:
    """FreeBSD's table with the ceilings of the running kernel's ``kern.hz``."""
    from ._sysctl import sysctl_int

    hz = sysctl_int("kern.hz")
    return freebsd_table(table, hz) if hz is not None else table


def generic_table(name: str) -> PlatformTable:
    """The table for a system netkeepalive has no table for: ``SO_KEEPALIVE`` only.

    ``SOL_SOCKET``/``SO_KEEPALIVE`` are taken from this interpreter's
    :mod:`socket` module (they are standard wherever it has them); every
    TCP knob is ``None``, so it raises
    :class:`~netkeepalive.UnsupportedOptionError` naming *name*.
    """
    return PlatformTable(
        name=name,
        enable=_interpreter_enable(),
        idle=None,
        interval=None,
        probes=None,
        user_timeout=None,
    )


_TABLES = {
    "android": ANDROID,
    "darwin": DARWIN,
    "freebsd": FREEBSD,
    "freebsd-pre-14": FREEBSD_PRE_14,
    "dragonfly": DRAGONFLY,
    "dragonfly-pre-5.8": DRAGONFLY_PRE_5_8,
    "netbsd": NETBSD,
    "netbsd-pre-8": NETBSD_PRE_8,
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
    tells: the Linux CPU architecture, the Windows build (as the interpreter
    reports it; the backend asks the kernel, see
    :func:`netkeepalive._backends.windows.running_table`).  A system with
    no table gets :func:`generic_table`: ``SO_KEEPALIVE`` only.
    """
    if name is None:
        name = detect_platform()
        if name == "linux":
            return _running_linux_table()
        if name == "win32":
            getwindowsversion = getattr(sys, "getwindowsversion", None)
            return windows_table(int(getwindowsversion().build) if getwindowsversion else 0)
        if name.startswith("freebsd"):
            return _running_freebsd_table(_TABLES[name])
    if name == "linux":
        return LINUX
    table = _TABLES.get(name)
    return table if table is not None else generic_table(name)

"""Stand-ins for the C library and ws2_32 that behave like the real functions.

They read the option value from the memory behind the pointer they are
given and write results back through the pointers, as the kernel does;
they remember each socket's options, so a getter reads back what a setter
wrote; failures return -1 and set errno (``ctypes.set_errno``) or the
Windows Sockets error (``WSAGetLastError``).  Every call is recorded as a
:class:`Call` with the exact arguments that reached the "kernel".
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

# The oracle, also re-exported for the tests that drive its rows.
from helpers.oracle import RULES, RULES_FILE, TABLE_RULES, Rule, rules_for, tables_for  # noqa: F401
from netkeepalive.constants import KNOBS

INT_SIZE = ctypes.sizeof(ctypes.c_int)
WSAEFAULT = 10014
WSAEINVAL = 10022
WSAENOTSOCK = 10038
WSAENOPROTOOPT = 10042
SIO_KEEPALIVE_VALS = 0x98000004
SOL_SOCKET_BSD = 0xFFFF
SO_KEEPALIVE_BSD = 8
TCP = 6
#: xnu's tcp_keepidle: 2 hours, in seconds as TCP_KEEPALIVE takes it.
XNU_DEFAULT_KEEPIDLE = 7200
INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1


@dataclass(frozen=True)
class Call:
    """One call as the kernel saw it."""

    func: str
    fd: int
    level: int
    option: int
    #: The int read from (setsockopt) or written to (getsockopt) the buffer,
    #: or the raw bytes given to WSAIoctl.
    value: Union[int, bytes, None]
    length: int


def _address(pointer: Any) -> int:
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    if not address:
        raise AssertionError("NULL pointer passed to the C library")
    return address


@dataclass
class Kernel:
    """Per-socket option values, injected failures and the call log."""

    #: Socket options this kernel knows; anything else is refused.
    known: Set[Tuple[int, int]] = field(default_factory=set)
    #: How an unknown option is refused (ENOPROTOOPT, or EINVAL as some do).
    unknown_errno: int = errno.ENOPROTOOPT
    #: (func, level, option) -> errno to fail with.
    failures: Dict[Tuple[str, int, int], int] = field(default_factory=dict)
    #: (level, option) -> predicate; values it rejects get EINVAL.
    accepts: Dict[Tuple[int, int], Callable[[int], bool]] = field(default_factory=dict)
    values: Dict[Tuple[int, int, int], int] = field(default_factory=dict)
    #: (level, option) -> what getsockopt reports for a socket that never set it.
    defaults: Dict[Tuple[int, int], int] = field(default_factory=dict)
    calls: List[Call] = field(default_factory=list)
    #: Options the kernel takes but never reports (getsockopt: ENOPROTOOPT).
    write_only: Set[Tuple[int, int]] = field(default_factory=set)
    #: xnu's keepalive timer, when modelled: (level, option) of the idle
    #: option and of SO_KEEPALIVE.  ``armed[fd]`` is the idle time the
    #: running timer was last armed with (the system default until then).
    timer: Optional[Tuple[Tuple[int, int], Tuple[int, int]]] = None
    armed: Dict[int, int] = field(default_factory=dict)
    #: The oracle's rows this kernel applies, by (level, option).
    rules: Dict[Tuple[int, int], Rule] = field(default_factory=dict)
    #: Rows a call consulted (their :attr:`Rule.key`): a test can show it
    #: exercised the row it names.
    consulted: Set[Tuple[str, str, str]] = field(default_factory=set)
    #: (level, option) -> side rule (kernel, fd, value) -> errno or None.
    side_rules: Dict[Tuple[int, int], Callable[[Kernel, int, int], Optional[int]]] = field(
        default_factory=dict
    )
    #: (level, option) -> how the kernel rounds what it stores.
    rounding: Dict[Tuple[int, int], Callable[[int], int]] = field(default_factory=dict)
    #: sysctlbyname(3) names and their int values (FakeLibc.sysctlbyname).
    sysctls: Dict[str, int] = field(default_factory=dict)

    def refuse(self, fd: int, level: int, option: int, value: int) -> Optional[int]:
        """The errno the kernel's own rules give a set of *value*, or ``None``."""
        rule = self.rules.get((level, option))
        if rule is not None:
            self.consulted.add(rule.key)
            if (rule.system, rule.option) in HZ_CEILING:
                # FreeBSD: u_int seconds up to UINT_MAX / hz (the row assumes hz 1000).
                hz = self.sysctls.get("kern.hz", 1000)
                rule = replace(rule, maximum=UINT_MAX // hz)
                if not rule.accepts(value) or value & UINT_MAX > UINT_MAX // hz:
                    return errno.EINVAL
            elif (rule.system, rule.option) not in REPLACES_RANGE and not rule.accepts(value):
                return errno.EINVAL
        if not self.accepts.get((level, option), _any)(value):
            return errno.EINVAL
        side = self.side_rules.get((level, option))
        return side(self, fd, value) if side is not None else None

    def store(self, fd: int, level: int, option: int, value: int) -> None:
        rounding = self.rounding.get((level, option))
        self.values[fd, level, option] = rounding(value) if rounding is not None else value

    def rearm(self, fd: int, level: int, option: int, value: int) -> None:
        """xnu: setting the idle option re-arms the timer with TCP_CONN_KEEPIDLE(tp).

        That is the socket's idle time only while SO_KEEPALIVE is on, the
        system default otherwise (bsd/netinet/tcp_timer.h); setting
        SO_KEEPALIVE re-arms nothing (bsd/kern/uipc_socket.c).
        """
        if self.timer is None or (level, option) != self.timer[0]:
            return
        keepalive = self.values.get((fd, *self.timer[1]), 0)
        self.armed[fd] = value if keepalive else XNU_DEFAULT_KEEPIDLE

    def check(self, func: str, level: int, option: int) -> Optional[int]:
        injected = self.failures.get((func, level, option))
        if injected is not None:
            return injected
        if (level, option) not in self.known:
            return self.unknown_errno
        return None


class FakeLibc:
    """The C library's ``setsockopt``/``getsockopt`` (int options, errno)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def setsockopt(self, fd: int, level: int, option: int, optval: Any, optlen: int) -> int:
        k = self.kernel
        value = ctypes.c_int.from_address(_address(optval)).value if optlen == INT_SIZE else None
        k.calls.append(Call("setsockopt", fd, level, option, value, optlen))
        err = k.check("setsockopt", level, option)
        if err is None and optlen != INT_SIZE:
            err = errno.EINVAL
        if err is None:
            assert value is not None
            err = k.refuse(fd, level, option, value)
        if err is not None:
            ctypes.set_errno(err)
            return -1
        assert value is not None
        k.store(fd, level, option, value)
        k.rearm(fd, level, option, value)
        return 0

    def getsockopt(self, fd: int, level: int, option: int, optval: Any, optlen: Any) -> int:
        k = self.kernel
        length = ctypes.c_uint32.from_address(_address(optlen))
        err = k.check("getsockopt", level, option)
        rule = k.rules.get((level, option)) if err is None else None
        if rule is not None:
            k.consulted.add(rule.key)
        if err is None and (level, option) in k.write_only:
            err = errno.ENOPROTOOPT
        if err is None and length.value < INT_SIZE:
            err = errno.EINVAL
        if err is not None:
            k.calls.append(Call("getsockopt", fd, level, option, None, length.value))
            ctypes.set_errno(err)
            return -1
        value = k.values.get((fd, level, option), k.defaults.get((level, option), 0))
        ctypes.c_int.from_address(_address(optval)).value = value
        length.value = INT_SIZE
        k.calls.append(Call("getsockopt", fd, level, option, value, INT_SIZE))
        return 0

    def sysctlbyname(self, name: bytes, oldp: Any, oldlenp: Any, newp: Any, newlen: int) -> int:
        """sysctlbyname(3) for an int: ENOENT for an unknown name, ENOMEM for a short buffer."""
        value = self.kernel.sysctls.get(name.decode("ascii"))
        if value is None or newp is not None:
            ctypes.set_errno(errno.ENOENT if value is None else errno.EPERM)
            return -1
        size = ctypes.c_size_t.from_address(_address(oldlenp))
        if size.value < INT_SIZE:
            ctypes.set_errno(errno.ENOMEM)
            return -1
        ctypes.c_int.from_address(_address(oldp)).value = value
        size.value = INT_SIZE
        return 0


def _any(value: int) -> bool:
    return True


class _Function:
    """A foreign function: honours ``argtypes`` as ctypes does, then runs *impl*."""

    def __init__(self, impl: Callable[..., int]) -> None:
        self.impl = impl
        self.argtypes: Optional[List[Any]] = None
        self.restype: Any = ctypes.c_int

    def __call__(self, *args: Any) -> int:
        if self.argtypes is not None:
            if len(args) != len(self.argtypes):
                raise TypeError(f"expected {len(self.argtypes)} arguments, got {len(args)}")
            for argtype, arg in zip(self.argtypes, args):
                argtype.from_param(arg)  # raises like ctypes for a wrong type
        return self.impl(*args)


class FakeWs2:
    """ws2_32's ``setsockopt``/``getsockopt``/``WSAIoctl``/``WSAGetLastError``.

    ``boolean_keepalive`` makes ``getsockopt(SO_KEEPALIVE)`` answer with a
    1-byte ``BOOLEAN``, as newer Windows does.
    """

    def __init__(self, kernel: Kernel, boolean_keepalive: bool = False) -> None:
        self.kernel = kernel
        self.boolean_keepalive = boolean_keepalive
        self.last_error = 0
        self.setsockopt = _Function(self._setsockopt)
        self.getsockopt = _Function(self._getsockopt)
        self.WSAIoctl = _Function(self._ioctl)
        self.WSAGetLastError = _Function(lambda: self.last_error)

    def _fail(self, winerror: int) -> int:
        self.last_error = winerror
        return -1

    def _socket(self, s: int) -> Optional[int]:
        """WSAENOTSOCK for INVALID_SOCKET (what a closed socket's -1 becomes)."""
        if s == (1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1:
            return WSAENOTSOCK
        return None

    def _wsa(self, err: int) -> int:
        return {errno.ENOPROTOOPT: WSAENOPROTOOPT, errno.EINVAL: WSAEINVAL}.get(err, err)

    def _setsockopt(self, s: int, level: int, option: int, optval: Any, optlen: int) -> int:
        k = self.kernel
        value = ctypes.c_int.from_address(_address(optval)).value if optlen == INT_SIZE else None
        k.calls.append(Call("setsockopt", s, level, option, value, optlen))
        bad = self._socket(s)
        if bad is not None:
            return self._fail(bad)
        err = k.check("setsockopt", level, option)
        if err is None and optlen != INT_SIZE:
            err = errno.EINVAL
        if err is None:
            assert value is not None
            err = k.refuse(s, level, option, value)
        if err is not None:
            return self._fail(self._wsa(err))
        assert value is not None
        k.store(s, level, option, value)
        return 0

    def _getsockopt(self, s: int, level: int, option: int, optval: Any, optlen: Any) -> int:
        k = self.kernel
        length = ctypes.c_int.from_address(_address(optlen))
        bad = self._socket(s)
        err = k.check("getsockopt", level, option) if bad is None else None
        if bad is not None or err is not None:
            k.calls.append(Call("getsockopt", s, level, option, None, length.value))
            return self._fail(bad if bad is not None else self._wsa(err or 0))
        value = k.values.get((s, level, option), 0)
        if self.boolean_keepalive and (level, option) == (SOL_SOCKET_BSD, SO_KEEPALIVE_BSD):
            # Only the first byte is written; the rest of the buffer is untouched.
            ctypes.c_ubyte.from_address(_address(optval)).value = 1 if value else 0
            length.value = 1
        else:
            ctypes.c_int.from_address(_address(optval)).value = value
            length.value = INT_SIZE
        k.calls.append(Call("getsockopt", s, level, option, value, length.value))
        return 0

    def _ioctl(
        self,
        s: int,
        code: int,
        inbuf: Any,
        inlen: int,
        outbuf: Any,
        outlen: int,
        returned: Any,
        overlapped: Any,
        routine: Any,
    ) -> int:
        k = self.kernel
        raw = ctypes.string_at(_address(inbuf), inlen)
        k.calls.append(Call("WSAIoctl", s, 0, code, raw, inlen))
        bad = self._socket(s)
        if bad is not None:
            return self._fail(bad)
        injected = k.failures.get(("WSAIoctl", 0, code))
        if injected is not None:
            return self._fail(injected)
        if code != SIO_KEEPALIVE_VALS or inlen != 12 or overlapped is not None:
            return self._fail(WSAEINVAL)
        rule = k.rules.get((0, code))
        if rule is not None:  # three u_long: any value is in range
            k.consulted.add(rule.key)
        ctypes.c_uint32.from_address(_address(returned)).value = 0
        onoff = int.from_bytes(raw[:4], "little")
        # The ioctl switches keepalive on or off as well.
        k.values[s, SOL_SOCKET_BSD, SO_KEEPALIVE_BSD] = 1 if onoff else 0
        return 0


def known_options(table: Any) -> Set[Tuple[int, int]]:
    """(level, option) of every socket option in *table* (fallbacks included)."""
    known: Set[Tuple[int, int]] = set()
    for knob in KNOBS:
        opt = table.option(knob)
        while opt is not None:
            if opt.number != SIO_KEEPALIVE_VALS:
                known.add((opt.level, opt.number))
            opt = opt.fallback
    return known


#: illumos: a connection's retransmit bounds in ms (netinet/tcp.h TCP_RTO_MIN
#: 0x1A, TCP_RTO_MAX 0x1B; tcp_tunables.c defaults 400 ms and 60 s), which
#: tcp_opt_get reports and TCP_KEEPINTVL x 1000 must lie within.
ILLUMOS_RTO_MIN, ILLUMOS_RTO_MAX = (TCP, 0x1A), (TCP, 0x1B)
#: The default maximum is the oracle's TCP_KEEPINTVL ceiling (60 s) in ms.
ILLUMOS_RTO_DEFAULTS = {
    ILLUMOS_RTO_MIN: 400,
    ILLUMOS_RTO_MAX: next(
        r.maximum * 1000
        for r in RULES
        if (r.system, r.option) == ("illumos", "TCP_KEEPINTVL") and r.maximum is not None
    ),
}
#: illumos tcp_tunables.c _keepalive_abort_interval: 8 minutes, in ms.
ILLUMOS_ABORT_INTERVAL = 480_000


#: Side rules that replace the row's fixed range with the per-socket check.
REPLACES_RANGE = {("illumos", "TCP_KEEPINTVL")}
#: FreeBSD rows whose maximum is UINT_MAX / hz ("hz 1000 assumed"): the
#: simulated kernel takes hz from its kern.hz sysctl.
HZ_CEILING = {
    ("freebsd", option) for option in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_MAXUNACKTIME")
}
assert all(r.maximum == UINT_MAX // 1000 for r in RULES if (r.system, r.option) in HZ_CEILING), (
    "the oracle's FreeBSD ceilings assume hz 1000"
)


def _illumos_interval(kernel: Kernel, fd: int, seconds: int) -> Optional[int]:
    """tcp_opt_set TCP_KEEPINTVL: x 1000 within the socket's tcp_rto_min..max."""
    lo = kernel.values.get((fd, *ILLUMOS_RTO_MIN), ILLUMOS_RTO_DEFAULTS[ILLUMOS_RTO_MIN])
    hi = kernel.values.get((fd, *ILLUMOS_RTO_MAX), ILLUMOS_RTO_DEFAULTS[ILLUMOS_RTO_MAX])
    return None if lo <= seconds * 1000 <= hi else errno.EINVAL


def _illumos_count(kernel: Kernel, fd: int, count: int) -> Optional[int]:
    """tcp_opt_set TCP_KEEPCNT alone: derives the interval and clamps it to the RTO bounds."""
    if count > 0 and not kernel.values.get((fd, TCP, 36)):
        lo = kernel.values.get((fd, *ILLUMOS_RTO_MIN), ILLUMOS_RTO_DEFAULTS[ILLUMOS_RTO_MIN])
        hi = kernel.values.get((fd, *ILLUMOS_RTO_MAX), ILLUMOS_RTO_DEFAULTS[ILLUMOS_RTO_MAX])
        kernel.values[fd, TCP, 36] = min(max(ILLUMOS_ABORT_INTERVAL // count, lo), hi) // 1000
    return None


#: Side rules the simulation can play, by (system, option): a check run
#: after the range (an errno refuses) that may also change other options.
SIDE_RULES: Dict[Tuple[str, str], Callable[[Kernel, int, int], Optional[int]]] = {
    ("illumos", "TCP_KEEPINTVL"): _illumos_interval,
    ("illumos", "TCP_KEEPCNT"): _illumos_count,
}
#: What a getter reports for an option never set, by (system, option): xnu's
#: TCP_KEEPALIVE getter answers the system default (tcp_keepidle, 2 hours).
UNSET_DEFAULTS: Dict[Tuple[str, str], int] = {("macos", "TCP_KEEPALIVE"): XNU_DEFAULT_KEEPIDLE}
#: Stored values the kernel rounds, by (system, option): DragonFly before 5.8
#: keeps ms as 10 ms ticks (hz 100) and answers in whole ticks.
ROUNDING: Dict[Tuple[str, str, str], Callable[[int], int]] = {
    ("dragonfly", "pre-5.8", "TCP_KEEPIDLE"): lambda ms: ms // 10 * 10,
    ("dragonfly", "pre-5.8", "TCP_KEEPINTVL"): lambda ms: ms // 10 * 10,
}


def _socket_options(rules: List[Rule]) -> Dict[Tuple[int, int], Rule]:
    """(level, option) -> row; the ioctl SIO_KEEPALIVE_VALS as (0, its code)."""
    keyed = {(r.level, r.number): r for r in rules if r.level is not None and r.number is not None}
    for r in rules:
        if r.option == "SIO_KEEPALIVE_VALS":
            keyed[0, SIO_KEEPALIVE_VALS] = r
    return keyed


#: Backward-compatible views: table name -> {(level, option): predicate}, and
#: table name -> options getsockopt does not answer.
KERNEL_RULES: Dict[str, Dict[Tuple[int, int], Callable[[int], bool]]] = {
    name: {key: rule.accepts for key, rule in _socket_options(rules_for(name)).items()}
    for name in [*TABLE_RULES, "win32"]
}
WRITE_ONLY: Dict[str, Set[Tuple[int, int]]] = {
    name: {key for key, rule in _socket_options(rules_for(name)).items() if not rule.readable}
    for name in TABLE_RULES
}
WRITE_ONLY = {name: keys for name, keys in WRITE_ONLY.items() if keys}


def real_kernel(kernel: Kernel, table_name: str) -> None:
    """Make *kernel* refuse and hide what the real kernel of *table_name* does (the oracle)."""
    rules = rules_for(table_name)
    kernel.rules.update(_socket_options(rules))
    for key, rule in _socket_options(rules).items():
        if not rule.readable:
            kernel.write_only.add(key)
        side = SIDE_RULES.get((rule.system, rule.option))
        if side is not None:
            kernel.side_rules[key] = side
        default = UNSET_DEFAULTS.get((rule.system, rule.option))
        if default is not None:
            kernel.defaults.setdefault(key, default)
        rounding = ROUNDING.get(rule.key)
        if rounding is not None:
            kernel.rounding[key] = rounding
    systems = {r.system for r in rules}
    if "illumos" in systems:
        kernel.known |= set(ILLUMOS_RTO_DEFAULTS)
        for key, value in ILLUMOS_RTO_DEFAULTS.items():
            kernel.defaults.setdefault(key, value)
    if "macos" in systems:
        kernel.timer = ((TCP, 0x10), (SOL_SOCKET_BSD, SO_KEEPALIVE_BSD))

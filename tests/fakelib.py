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
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

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
        if err is None and (optlen != INT_SIZE or not k.accepts.get((level, option), _any)(value)):
            err = errno.EINVAL
        if err is not None:
            ctypes.set_errno(err)
            return -1
        assert value is not None
        k.values[fd, level, option] = value
        k.rearm(fd, level, option, value)
        return 0

    def getsockopt(self, fd: int, level: int, option: int, optval: Any, optlen: Any) -> int:
        k = self.kernel
        length = ctypes.c_uint32.from_address(_address(optlen))
        err = k.check("getsockopt", level, option)
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
        if err is None and (optlen != INT_SIZE or not k.accepts.get((level, option), _any)(value)):
            err = errno.EINVAL
        if err is not None:
            return self._fail(self._wsa(err))
        assert value is not None
        k.values[s, level, option] = value
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
        ctypes.c_uint32.from_address(_address(returned)).value = 0
        onoff = int.from_bytes(raw[:4], "little")
        # The ioctl switches keepalive on or off as well.
        k.values[s, SOL_SOCKET_BSD, SO_KEEPALIVE_BSD] = 1 if onoff else 0
        return 0


def known_options(table: Any) -> Set[Tuple[int, int]]:
    """(level, option) of every socket option in *table* (fallbacks included)."""
    known: Set[Tuple[int, int]] = set()
    for knob in ("enable", "idle", "interval", "probes", "user_timeout"):
        opt = table.option(knob)
        while opt is not None:
            if opt.number != SIO_KEEPALIVE_VALS:
                known.add((opt.level, opt.number))
            opt = opt.fallback
    return known


def _between(lo: int, hi: int) -> Callable[[int], bool]:
    return lambda value: lo <= value <= hi


def _unsigned_at_most(hi: int) -> Callable[[int], bool]:
    """A ``u_int`` the kernel bounds: a negative int arrives as a huge u_int."""
    return lambda value: value & UINT_MAX <= hi


def _positive_unsigned(value: int) -> bool:
    return value & UINT_MAX > 0


def _at_least_one_tick(ms: int) -> bool:
    """DragonFly before 5.8: ms * hz / 1000 ticks (hz = 100), 0 ticks refused."""
    return ms * 100 // 1000 >= 1


#: What each simulated kernel refuses with EINVAL, in its own unit, from the
#: function cited (table name -> {(level, option): predicate}); and the
#: options it takes but never reports.  Kept apart from netkeepalive's own
#: tables so that a test fails when the library lets through a value the
#: real kernel would refuse.
KERNEL_RULES: Dict[str, Dict[Tuple[int, int], Callable[[int], bool]]] = {
    # net/ipv4/tcp.c do_tcp_setsockopt
    "linux": {
        (TCP, 4): _between(1, 32767),
        (TCP, 5): _between(1, 32767),
        (TCP, 6): _between(1, 127),
        (TCP, 18): _between(0, INT_MAX),
    },
    # xnu bsd/netinet/tcp_usrreq.c tcp_ctloutput
    "darwin": {
        (TCP, 0x10): _between(0, UINT_MAX // 1000),
        (TCP, 0x101): _between(0, UINT_MAX // 1000),
        (TCP, 0x102): _between(0, INT_MAX),
        (TCP, 0x80): _between(0, UINT_MAX // 1000),
    },
    # sys/netinet/tcp_usrreq.c tcp_default_ctloutput (hz = 1000)
    "freebsd": {
        (TCP, 256): _unsigned_at_most(UINT_MAX // 1000),
        (TCP, 512): _unsigned_at_most(UINT_MAX // 1000),
        (TCP, 68): _unsigned_at_most(UINT_MAX // 1000),
    },
    # sys/netinet/tcp_usrreq.c tcp_ctloutput: ms * hz / 1000 >= 1, hz = 100
    "dragonfly-pre-5.8": {
        (TCP, 256): _at_least_one_tick,
        (TCP, 512): _at_least_one_tick,
        (TCP, 1024): lambda n: n > 0,
    },
    # sys/netinet/tcp_usrreq.c tcp_ctloutput: ui > 0
    "netbsd": {
        (TCP, 3): _positive_unsigned,
        (TCP, 5): _positive_unsigned,
        (TCP, 6): _positive_unsigned,
    },
    # usr/src/uts/common/inet/tcp/tcp_opt_data.c tcp_opt_set, default tunables
    "illumos": {
        (TCP, 34): lambda s: 10_000 <= s * 1000 <= 864_000_000,
        (TCP, 22): _between(10_000, 864_000_000),
        (TCP, 36): lambda s: 400 <= s * 1000 <= 60_000,
        (TCP, 35): lambda n: n > 0,
    },
    # Oracle tcp(4P) as quoted by libuv (unverified against a source)
    "solaris": {(TCP, 29): _between(10, 864_000), (TCP, 30): _between(10, 864_000)},
    # Microsoft, IPPROTO_TCP socket options: TCP_KEEPCNT at most 255
    "win32": {(TCP, 16): _between(0, 255)},
}
KERNEL_RULES["android"] = KERNEL_RULES["linux"]
KERNEL_RULES["freebsd-pre-14"] = KERNEL_RULES["freebsd"]
KERNEL_RULES["dragonfly"] = KERNEL_RULES["freebsd"]
KERNEL_RULES["netbsd-pre-8"] = KERNEL_RULES["netbsd"]
WRITE_ONLY: Dict[str, Set[Tuple[int, int]]] = {
    # NetBSD sys/netinet/tcp_usrreq.c tcp_ctloutput before rev 1.214.6.1
    # (netbsd-8): PRCO_GETOPT knows none of them
    "netbsd-pre-8": {(TCP, 3), (TCP, 5), (TCP, 6)},
}


def real_kernel(kernel: Kernel, table_name: str) -> None:
    """Make *kernel* refuse and hide what the real kernel of *table_name* does."""
    base = table_name.split(" ")[0]  # "win32 (build 15063)" -> "win32"
    kernel.accepts.update(KERNEL_RULES.get(table_name, KERNEL_RULES.get(base, {})))
    kernel.write_only |= WRITE_ONLY.get(table_name, set())
    if base == "darwin":
        kernel.timer = ((TCP, 0x10), (SOL_SOCKET_BSD, SO_KEEPALIVE_BSD))

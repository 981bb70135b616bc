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
        return 0

    def getsockopt(self, fd: int, level: int, option: int, optval: Any, optlen: Any) -> int:
        k = self.kernel
        length = ctypes.c_uint32.from_address(_address(optlen))
        err = k.check("getsockopt", level, option)
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

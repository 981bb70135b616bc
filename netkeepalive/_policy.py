"""install()'s policy as ready-made writes: what a connect does under install().

:func:`writes` turns the values :func:`~netkeepalive.install` checked into
the writes :func:`~netkeepalive.configure` would make (``APPLY_ORDER``,
``SO_KEEPALIVE``, the idle time again when enabling), in kernel units, once
per backend: a connect does no validation, no conversion and no read-back.
All or nothing stays: every original is read before the first write.
"""

from __future__ import annotations

import socket
import sys

from ._access import fast_writes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Tuple

__all__ = ["fresh", "through_socket", "writes"]

_raw_getsockopt = socket.socket.__mro__[1].getsockopt  # type: ignore[attr-defined]
_raw_setsockopt = socket.socket.__mro__[1].setsockopt  # type: ignore[attr-defined]
_raw_getpeername = socket.socket.__mro__[1].getpeername  # type: ignore[attr-defined]
_raw_fileno = socket.socket.fileno

# Only new sockets get the policy: one connected, connecting or listening
# before install() keeps its settings.
if sys.platform.startswith("linux"):
    _TCP = socket.IPPROTO_TCP
    _TCP_INFO = getattr(socket, "TCP_INFO", 11)
    _CLOSED = b"\x07"  # TCP_CLOSE: neither connected, connecting nor listening

    def fresh(sock: socket.socket) -> bool:
        """Whether *sock* is new: not connected, connecting or listening (one system call)."""
        try:
            return _raw_getsockopt(sock, _TCP, _TCP_INFO, 1) == _CLOSED  # type: ignore[no-any-return]
        except OSError:
            return False  # closed: the original method raises its own error

else:
    _ACCEPTCONN = getattr(socket, "SO_ACCEPTCONN", 0x0002)

    def fresh(sock: socket.socket) -> bool:
        """Whether *sock* is new: neither connected nor listening."""
        try:
            if _raw_getsockopt(sock, socket.SOL_SOCKET, _ACCEPTCONN):
                return False
            _raw_getpeername(sock)
        except OSError:
            return _raw_fileno(sock) >= 0  # ENOTCONN: new
        return False


def writes(knobs: Any, given: Tuple[Optional[int], ...], enable: bool) -> Tuple[object, Any, Any]:
    """``(the accessors they were made for, writes, raw)`` for the values *given*.

    *given* are in ``APPLY_ORDER`` (``None``: not set).  *writes* are
    ``(accessor, native)`` for :func:`._access.apply_fast`, ``None`` where
    configure() must run; *raw* the same for :func:`through_socket`, or
    ``None`` unless the backend calls the C library's own
    ``setsockopt``/``getsockopt`` (those the socket module's methods call,
    at less cost than a call through ctypes).
    """
    fast = fast_writes(knobs, given)
    if fast is None or not knobs.backend.libc_calls:
        return knobs.ordered, fast, None
    again = fast[-1:] if enable and fast and fast[-1][0] is knobs.idle else []
    seq = [*fast, (knobs.enable, 1 if enable else 0), *again]
    reads = tuple((f.level, f.number) for f, _native in seq[: len(fast) + 1])
    return knobs.ordered, fast, (reads, tuple((f.level, f.number, n) for f, n in seq))


def through_socket(sock: socket.socket, raw: Tuple[Any, Any]) -> bool:
    """Read the originals, then write; ``False`` after a refusal, with what was written put back.

    configure() then tries again and raises an error that names the call
    and the option (and anything it could not put back).
    """
    reads, writes = raw
    was = [_raw_getsockopt(sock, level, number) for level, number in reads]
    done = 0
    try:
        for level, number, value in writes:
            _raw_setsockopt(sock, level, number, value)
            done += 1
    except OSError:
        for (level, number, _value), old in reversed(list(zip(writes[:done], was))):
            try:
                _raw_setsockopt(sock, level, number, old)
            except OSError:  # configure() names what is left changed
                continue
        return False
    return True

"""install()'s policy as ready-made writes: what a connect does under install().

:func:`writer` turns the values :func:`~netkeepalive.install` checked into
the writes :func:`~netkeepalive.configure` would make (``_APPLY_ORDER``,
``SO_KEEPALIVE``, the idle time again when enabling), in kernel units, once
per backend: a connect does no validation, no conversion and no read-back.
All or nothing stays: every original is read before the first write.
"""

from __future__ import annotations

import socket
from functools import partial

from . import _api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

__all__ = ["writer"]

_raw_getsockopt = socket.socket.__mro__[1].getsockopt  # type: ignore[attr-defined]
_raw_setsockopt = socket.socket.__mro__[1].setsockopt  # type: ignore[attr-defined]


def writer(
    knobs: Any, given: Tuple[Optional[int], ...], enable: bool
) -> Tuple[object, Optional[Callable[[socket.socket], bool]]]:
    """``(the accessors it was made for, write)``; *write* is ``None`` where configure() must run.

    *given* are the values in ``_APPLY_ORDER`` (``None``: not set).
    ``write(sock)`` returns ``False`` after a refusal, with what it wrote
    put back: configure() then tries again and raises an error naming the
    call and the option.  Where the backend calls the C library's own
    ``setsockopt``/``getsockopt`` (those the socket module's methods call),
    a connect writes through the socket module's methods, which cost less
    than a call through ctypes; elsewhere through the accessors.
    """
    writes = _api._fast_writes(knobs, given)
    if writes is None:
        return knobs.ordered, None
    if not knobs.backend.libc_calls:
        return knobs.ordered, partial(_through_accessors, knobs, writes, enable)
    again = writes[-1:] if enable and writes and writes[-1][0] is knobs.idle else []
    seq = [*writes, (knobs.enable, 1 if enable else 0), *again]
    raw = tuple((f.level, f.number, native) for f, native in seq)
    return knobs.ordered, partial(_through_socket, raw, len(writes) + 1)


def _through_accessors(knobs: Any, writes: List[Any], enable: bool, sock: socket.socket) -> bool:
    _api._apply_fast(knobs, sock.fileno(), writes, enable)  # raises the framed error
    return True


def _through_socket(raw: Tuple[Tuple[int, int, int], ...], count: int, sock: socket.socket) -> bool:
    """Read the *count* originals, then write *raw* (the last may repeat the idle time)."""
    was = [_raw_getsockopt(sock, level, number) for level, number, _value in raw[:count]]
    done = 0
    try:
        for level, number, value in raw:
            _raw_setsockopt(sock, level, number, value)
            done += 1
    except OSError:
        for (level, number, _value), old in reversed(list(zip(raw[:done], was))):
            try:
                _raw_setsockopt(sock, level, number, old)
            except OSError:  # configure() names what is left changed
                continue
        return False
    return True

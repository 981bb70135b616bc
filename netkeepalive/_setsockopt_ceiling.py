"""``install(enforce=True)``: the policy as a ceiling on what the program writes.

With enforcement on, ``socket.socket.setsockopt`` is replaced by
:func:`_setsockopt`.  A write of one of the policy's options on a TCP
socket (``SOL_SOCKET``/``SO_KEEPALIVE``, the keepalive times and count,
``TCP_USER_TIMEOUT``) is compared with the policy: a shorter time or fewer
probes goes through as written; turning keepalive off, a longer time, more
probes, or a user timeout of 0 (none) is replaced by the policy's own value
and counted (:func:`clamped_writes`).  Every other option costs one
dictionary look-up.
"""

from __future__ import annotations

import operator
import socket
import struct
import threading
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from . import _forksafe

__all__ = ["clamped_writes"]

#: ``where(sock, address) -> bool``, as for install().
Where = Callable[[socket.socket, Any], bool]


class _Rule(NamedTuple):
    knob: str
    #: The policy's value in the option's own unit (1 for SO_KEEPALIVE).
    limit: int
    #: 0 is "none" (TCP_USER_TIMEOUT): a write of 0 is clamped too.
    zero_is_none: bool


_INT = struct.Struct("i")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_INET = (socket.AF_INET, getattr(socket, "AF_INET6", -1))
_raw_family = socket.socket.__mro__[1].family.__get__  # type: ignore[attr-defined]
_raw_type = socket.socket.__mro__[1].type.__get__  # type: ignore[attr-defined]
_raw_proto = socket.socket.__mro__[1].proto.__get__  # type: ignore[attr-defined]
#: TCP, and MPTCP (262), whose sockets take the same options for their TCP subflows.
_TCP_PROTOCOLS = (0, socket.IPPROTO_TCP, getattr(socket, "IPPROTO_MPTCP", 262))
_real_setsockopt: Callable[..., Any] = socket.socket.setsockopt

#: The installed policy: its rules, (level, option number) -> rule (empty
#: when nothing is enforced), and its ``where``.  One tuple, replaced whole
#: and never changed in place, so a write sees one policy's rules and
#: ``where`` together, even while another thread re-installs.
_policy: Tuple[Dict[Tuple[int, int], _Rule], Optional[Where]] = ({}, None)

#: The lock os.fork() waits for (see :mod:`._forksafe`): a fork while another
#: thread counts must not leave the child a lock that no thread of its releases.
_count_lock = _forksafe.lock
_counts: Dict[str, int] = {}
#: ``where`` is running in this thread: a ``setsockopt`` it makes itself is
#: handed on as written (asking it again would recurse without end).
_asking = threading.local()


def set_rules(rules: Dict[Tuple[int, int], _Rule], where: Optional[Where]) -> None:
    """Put *rules* in force (the caller holds install()'s lock)."""
    global _policy
    _policy = (rules, where)


def clamped_writes() -> Dict[str, int]:
    """How many writes ``install(enforce=True)`` clamped, per option.

    Keys are the knob names (``"enable"``, ``"idle"``, ``"interval"``,
    ``"probes"``, ``"user_timeout"``); only options with at least one
    clamped write appear.  Counts are for the whole life of the process
    (:func:`~netkeepalive.uninstall` does not reset them).
    """
    with _count_lock:
        return dict(_counts)


def _clamp(rule: _Rule, value: int) -> Optional[int]:
    """The value to write instead of *value*, or ``None`` to write *value*."""
    if rule.knob == "enable":
        return rule.limit if value == 0 else None
    if value > rule.limit or (value == 0 and rule.zero_is_none):
        return rule.limit
    return None


def _enforced(sock: socket.socket, rule: _Rule, value: Any, where: Optional[Where]) -> Any:
    """*value*, or the policy's value in its place (and counted)."""
    if (
        _raw_type(sock) != socket.SOCK_STREAM
        or _raw_family(sock) not in _INET
        or _raw_proto(sock) not in _TCP_PROTOCOLS
    ):
        return value  # not TCP: as written
    # The forms socket.setsockopt takes, in its order: an int (or anything
    # with __index__), then any bytes-like buffer, of which the kernel reads
    # the first C int.  The value checked is the value handed on.
    buffer = None
    if isinstance(value, int):
        number = int.__index__(value)  # the number itself, not an override's
    else:
        try:
            number = operator.index(value)
        except TypeError:
            try:
                view = memoryview(value)
            except TypeError:
                return value  # (None, optlen): the kernel's business
            if not view.c_contiguous or view.nbytes < _INT.size:
                return value  # Python or the kernel refuses it as it is
            buffer = view.tobytes()
            number = _INT.unpack_from(buffer)[0]
        else:
            value = number
    if not _INT_MIN <= number <= _INT_MAX:
        return value  # not a C int: Python refuses it as it would without us
    replacement = _clamp(rule, number)
    if replacement is None:
        return value if buffer is None else buffer
    if where is not None:
        if getattr(_asking, "where", False):
            return value  # written by where() itself: as written, never asked again
        try:
            address: Any = sock.getpeername()
        except OSError:
            address = None
        _asking.where = True
        try:
            chosen = where(sock, address)
        finally:
            _asking.where = False
        if not chosen:
            return value
    with _count_lock:
        _counts[rule.knob] = _counts.get(rule.knob, 0) + 1
    if buffer is None:
        return replacement
    return _INT.pack(replacement) + buffer[_INT.size :]


def _setsockopt(self: socket.socket, level: int, optname: int, value: Any, *rest: Any) -> None:
    """``socket.setsockopt``, with the installed policy as a ceiling (netkeepalive)."""
    rules, where = _policy
    rule = rules.get((level, optname))
    if rule is None and not (type(level) is int and type(optname) is int):
        try:  # setsockopt takes anything with __index__ for these too
            level, optname = operator.index(level), operator.index(optname)
        except TypeError:
            pass
        else:
            rule = rules.get((level, optname))
    if rule is not None:
        value = _enforced(self, rule, value, where)
    _real_setsockopt(self, level, optname, value, *rest)


_setsockopt.__name__ = "setsockopt"
_setsockopt.__qualname__ = "socket.setsockopt"

#: What :func:`netkeepalive.install` puts in place of ``socket.socket.setsockopt``.
wrapper = _setsockopt


def set_real(original: Callable[..., Any]) -> None:
    """Make *original* the ``setsockopt`` that :data:`wrapper` calls (under install's lock)."""
    global _real_setsockopt
    _real_setsockopt = original


def build_rules(
    backend: Any, enable: bool, values: Dict[str, Optional[int]]
) -> Dict[Tuple[int, int], _Rule]:
    """The rules for a policy: *values* are milliseconds (counts for probes)."""
    from ._convert import to_native

    rules: Dict[Tuple[int, int], _Rule] = {}
    if enable:
        opt = backend.option("enable")
        rules[opt.level, opt.number] = _Rule("enable", 1, False)
    for knob, ms in values.items():
        if ms is None:
            continue
        opt = backend.option(knob)
        while opt is not None:
            native = to_native(opt, ms, knob)
            rules[opt.level, opt.number] = _Rule(knob, native, knob == "user_timeout")
            opt = opt.fallback
    return rules

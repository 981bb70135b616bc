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

import socket
import struct
import threading
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

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
_INET = (socket.AF_INET, getattr(socket, "AF_INET6", -1))
_raw_family = socket.socket.__mro__[1].family.__get__  # type: ignore[attr-defined]
_raw_type = socket.socket.__mro__[1].type.__get__  # type: ignore[attr-defined]
_raw_proto = socket.socket.__mro__[1].proto.__get__  # type: ignore[attr-defined]
_TCP_PROTOCOLS = (0, socket.IPPROTO_TCP)
_real_setsockopt: Callable[..., Any] = socket.socket.setsockopt

#: (level, option number) -> rule, for the installed policy; empty when
#: nothing is enforced.  Replaced whole, never changed in place, so a write
#: sees one policy's rules.
_rules: Dict[Tuple[int, int], _Rule] = {}
_where: Optional[Where] = None

_count_lock = threading.Lock()
_counts: Dict[str, int] = {}


def set_rules(rules: Dict[Tuple[int, int], _Rule], where: Optional[Where]) -> None:
    """Put *rules* in force (the caller holds install()'s lock)."""
    global _rules, _where
    _where = where
    _rules = rules


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


def _enforced(sock: socket.socket, rule: _Rule, value: Any) -> Any:
    """*value*, or the policy's value in its place (and counted)."""
    if (
        _raw_type(sock) != socket.SOCK_STREAM
        or _raw_family(sock) not in _INET
        or _raw_proto(sock) not in _TCP_PROTOCOLS
    ):
        return value  # not TCP: as written
    if isinstance(value, int):
        number = int(value)
    elif isinstance(value, (bytes, bytearray, memoryview)) and len(value) == _INT.size:
        number = _INT.unpack(bytes(value))[0]
    else:
        return value  # (None, optlen) and odd buffers: the kernel's business
    replacement = _clamp(rule, number)
    if replacement is None:
        return value
    where = _where
    if where is not None:
        try:
            address: Any = sock.getpeername()
        except OSError:
            address = None
        if not where(sock, address):
            return value
    with _count_lock:
        _counts[rule.knob] = _counts.get(rule.knob, 0) + 1
    return replacement if isinstance(value, int) else _INT.pack(replacement)


def _setsockopt(self: socket.socket, level: int, optname: int, value: Any, *rest: Any) -> None:
    """``socket.setsockopt``, with the installed policy as a ceiling (netkeepalive)."""
    rule = _rules.get((level, optname))
    if rule is not None:
        value = _enforced(self, rule, value)
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

"""Keepalive settings as ``(level, option, value)`` tuples for other libraries.

urllib3 (``socket_options=``), httpx (``HTTPTransport(socket_options=...)``)
and many other clients take a list of tuples that they pass to
``socket.setsockopt`` on every new socket.  :func:`socket_options` builds
that list for the running system with the same validation and unit
conversion as :func:`netkeepalive.configure`.  :func:`keepalive_options`
gives the same settings as the ``{option: value}`` mapping that redis-py
and py-amqp take.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional, Tuple

from . import _backends
from ._backends.base import Backend
from ._common import VALUE_KNOBS
from ._convert import Milliseconds, from_native, plan
from .constants import Option
from .errors import UnsupportedOptionError

__all__ = ["keepalive_options", "socket_options"]


_WINDOWS_DETAIL = (
    "before Windows 10 1709 (build 16299) the keepalive idle time and interval "
    "need WSAIoctl(SIO_KEEPALIVE_VALS), which a list of setsockopt options cannot "
    "carry; use netkeepalive.requests.KeepAliveAdapter, "
    "netkeepalive.urllib3.PoolManager or netkeepalive.configure() on the "
    "connected socket instead"
)


def _plan(
    backend: Backend,
    idle: Optional[Milliseconds],
    interval: Optional[Milliseconds],
    probes: Optional[int],
    user_timeout: Optional[Milliseconds],
) -> List[Tuple[str, Option, object, int]]:
    """``(knob, option, value, native)`` of each knob given, in :data:`VALUE_KNOBS` order."""
    return plan(backend.option, zip(VALUE_KNOBS, (idle, interval, probes, user_timeout)))


def checked_options(
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> Dict[str, Any]:
    """The given knobs (``None`` dropped) as keyword arguments for ``configure``.

    Each value is checked against the running system's table first, so
    this raises what :func:`netkeepalive.configure` would raise for the
    same values (``TypeError``, ``ValueError``,
    :class:`UnsupportedOptionError`) without touching any socket.  The
    values come back normalised: plain ``int`` in the public unit, each
    exactly what the kernel will get (``timedelta(seconds=1.5)`` is
    ``1000`` where the kernel takes whole seconds), so that an integration
    calling ``configure`` for every connection takes its fast path and
    validates nothing again.
    """
    if idle is None and interval is None and probes is None and user_timeout is None:
        return {}
    planned = _plan(_backends.backend(), idle, interval, probes, user_timeout)
    return {knob: from_native(opt, native) for knob, opt, _value, native in planned}


def socket_options(
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> List[Tuple[int, int, int]]:
    """``(level, option, value)`` tuples that turn keepalive on with these settings.

    The first tuple is ``(SOL_SOCKET, SO_KEEPALIVE, 1)``; then one tuple for
    each argument given: ``idle`` (ms, ``TCP_KEEPIDLE``; ``TCP_KEEPALIVE`` on
    macOS), ``interval`` (ms, ``TCP_KEEPINTVL``), ``probes`` (count,
    ``TCP_KEEPCNT``) and ``user_timeout`` (ms, ``TCP_USER_TIMEOUT``), each
    already in the unit the running kernel takes (whole seconds for the
    first two on Linux).  The library that receives the list calls
    ``setsockopt`` with each tuple; nothing is called here.

    Raises ``TypeError``/``ValueError`` for values :func:`~netkeepalive.configure`
    would refuse, and :class:`~netkeepalive.UnsupportedOptionError` for an
    option the running system lacks.  On Windows before build 16299,
    ``idle`` and ``interval`` raise :class:`~netkeepalive.UnsupportedOptionError`
    because those versions set them only through
    ``WSAIoctl(SIO_KEEPALIVE_VALS)``: use
    the adapters in :mod:`netkeepalive.requests` and
    :mod:`netkeepalive.urllib3`, or :func:`~netkeepalive.configure`, which
    configure the socket after it is created.
    """
    backend = _backends.backend()
    table = backend.table
    planned = _plan(backend, idle, interval, probes, user_timeout)
    for knob, opt, _value, _native in planned:
        if opt.level == 0:  # an ioctl (SIO_KEEPALIVE_VALS), not a socket option
            raise UnsupportedOptionError.for_knob(knob, table.name, _WINDOWS_DETAIL)
    enable = table.enable
    if enable is None:
        raise UnsupportedOptionError.for_knob("enable", table.name)
    result = [(enable.level, enable.number, 1)]
    result.extend((opt.level, opt.number, native) for _knob, opt, _value, native in planned)
    return result


def keepalive_options(
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> Dict[int, int]:
    """``{option number: value}`` for ``setsockopt(IPPROTO_TCP, option, value)``.

    What redis-py's ``socket_keepalive_options`` and py-amqp's
    ``socket_settings`` take: one entry for each argument given, ``idle``
    (ms, ``TCP_KEEPIDLE``; ``TCP_KEEPALIVE`` on macOS), ``interval`` (ms,
    ``TCP_KEEPINTVL``), ``probes`` (count, ``TCP_KEEPCNT``) and
    ``user_timeout`` (ms, ``TCP_USER_TIMEOUT``), in the unit the running
    kernel takes.  ``SO_KEEPALIVE`` is not in it: those clients turn it on
    themselves (redis-py with ``socket_keepalive=True``).  The values are
    checked exactly as by :func:`socket_options`, which raises the same
    errors.
    """
    options = socket_options(idle=idle, interval=interval, probes=probes, user_timeout=user_timeout)
    result: Dict[int, int] = {}
    for level, number, value in options[1:]:  # options[0] is SO_KEEPALIVE
        if level != socket.IPPROTO_TCP:  # no table has one; the mapping could not carry it
            raise UnsupportedOptionError.for_knob(
                f"option {number}", _backends.backend().table.name, "not an IPPROTO_TCP option"
            )
        result[number] = value
    return result

"""httpx: transports whose connections get keepalive through socket options.

httpx applies a transport's ``socket_options`` with ``setsockopt`` to each
new connection.  :class:`HTTPTransport` and :class:`AsyncHTTPTransport`
add :func:`netkeepalive.socket_options` to the caller's own list (which
they keep, in front).  Equivalent by hand::

    httpx.HTTPTransport(socket_options=netkeepalive.socket_options(idle=10_000))

Needs httpx: ``pip install 'netkeepalive[httpx]'``.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple

try:
    import httpx
except ImportError as exc:
    raise ImportError(
        "netkeepalive.httpx needs the 'httpx' package; install it with "
        "pip install 'netkeepalive[httpx]'"
    ) from exc

from ._convert import Milliseconds
from ._sockopts import socket_options as _keepalive_options

__all__ = ["AsyncHTTPTransport", "HTTPTransport"]

_SocketOption = Tuple[Any, ...]


class _KeepAliveTransport:
    """The ``__init__`` both transports share; put first among the bases."""

    def __init__(
        self,
        *,
        idle: Optional[Milliseconds] = None,
        interval: Optional[Milliseconds] = None,
        probes: Optional[int] = None,
        user_timeout: Optional[Milliseconds] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
        **kwargs: Any,
    ) -> None:
        keepalive = _keepalive_options(
            idle=idle, interval=interval, probes=probes, user_timeout=user_timeout
        )
        merged: List[_SocketOption] = [*(socket_options or ()), *keepalive]
        super().__init__(socket_options=merged, **kwargs)  # type: ignore[call-arg]


class HTTPTransport(_KeepAliveTransport, httpx.HTTPTransport):
    """:class:`httpx.HTTPTransport` with keepalive on every connection.

    ``idle``, ``interval`` and ``user_timeout`` in ms, ``probes`` a count,
    checked and converted by :func:`netkeepalive.socket_options` (so on
    Windows ``idle`` and ``interval`` raise
    :class:`~netkeepalive.UnsupportedOptionError`).  Other arguments,
    ``socket_options`` included, are httpx's.
    """


class AsyncHTTPTransport(_KeepAliveTransport, httpx.AsyncHTTPTransport):
    """:class:`httpx.AsyncHTTPTransport` with keepalive on every connection.

    The arguments are those of :class:`HTTPTransport`.
    """

"""aiohttp: a socket factory whose sockets get keepalive before they connect.

aiohttp 3.12 added ``TCPConnector(socket_factory=...)``: the connector
calls the factory with each address to try and connects the socket it
returns.  :func:`socket_factory` makes one that calls
:func:`netkeepalive.configure` on each new socket first::

    connector = aiohttp.TCPConnector(socket_factory=socket_factory(idle=10_000))
    async with aiohttp.ClientSession(connector=connector) as session: ...

Needs aiohttp 3.12 or later: ``pip install 'netkeepalive[aiohttp]'``.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Optional, Tuple

try:
    import aiohttp
except ImportError as exc:
    raise ImportError(
        "netkeepalive.aiohttp needs the 'aiohttp' package; install it with "
        "pip install 'netkeepalive[aiohttp]'"
    ) from exc

from ._api import configure
from ._common import version_tuple
from ._convert import Milliseconds
from ._sockopts import checked_options

__all__ = ["SocketFactory", "socket_factory"]

#: What ``TCPConnector(socket_factory=...)`` calls: ``(family, type, proto,
#: canonname, sockaddr)`` (one ``getaddrinfo`` entry) in, an unconnected socket out.
SocketFactory = Callable[[Tuple[Any, ...]], socket.socket]


if version_tuple(aiohttp.__version__) < (3, 12):
    raise ImportError(
        f"netkeepalive.aiohttp needs aiohttp 3.12 or later, for "
        f"TCPConnector(socket_factory=...); aiohttp {aiohttp.__version__} is installed: "
        f"pip install 'netkeepalive[aiohttp]'"
    )


def socket_factory(
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> SocketFactory:
    """A ``socket_factory`` for :class:`aiohttp.TCPConnector` with keepalive.

    Each socket it makes gets ``SO_KEEPALIVE`` and the options given
    (``idle``, ``interval``, ``user_timeout`` in ms, ``probes`` a count;
    ``setsockopt`` through :func:`netkeepalive.configure`) before aiohttp
    connects it, so connections to a proxy get them too.  Bad values raise
    ``TypeError``/``ValueError`` here, not at the first request; an option
    the kernel refuses closes the socket and fails that connection attempt.
    """
    options = checked_options(idle, interval, probes, user_timeout)

    def factory(addr_info: Tuple[Any, ...]) -> socket.socket:
        family, type_, proto = addr_info[:3]
        sock = socket.socket(family, type_, proto)
        try:
            configure(sock, **options)
        except BaseException:
            sock.close()
            raise
        return sock

    factory.netkeepalive_options = options  # type: ignore[attr-defined]
    return factory

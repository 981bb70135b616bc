"""asyncio: keepalive for connections opened or accepted by asyncio streams.

:func:`netkeepalive.configure` and :func:`netkeepalive.get_settings`
accept a ``StreamWriter`` or transport directly.  This module adds the two
places where a program does not hold the socket before it is used:
:func:`open_connection` (configured before it is returned) and
:func:`start_server` (every accepted connection configured before the
callback runs).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional, Tuple

from ._api import configure
from ._convert import Milliseconds
from ._sockopts import checked_options
from .servers import ServerKeepAlive

__all__ = ["open_connection", "start_server"]

#: What :func:`asyncio.start_server` calls for each connection.
ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Optional[Awaitable[None]]
]


async def open_connection(
    host: Optional[str] = None,
    port: Optional[int] = None,
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
    **kwargs: Any,
) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`asyncio.open_connection`, then :func:`netkeepalive.configure` on it.

    ``idle``, ``interval``, ``user_timeout`` in ms, ``probes`` a count;
    ``SO_KEEPALIVE`` is turned on.  Other keyword arguments go to
    :func:`asyncio.open_connection`.  Bad values raise
    ``TypeError``/``ValueError`` before connecting; an option the kernel
    refuses closes the connection and raises the ``OSError``.
    """
    options = checked_options(idle, interval, probes, user_timeout)  # before connecting
    reader, writer = await asyncio.open_connection(host, port, **kwargs)
    try:
        configure(writer, **options)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: Any = None,
    port: Optional[int] = None,
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
    **kwargs: Any,
) -> asyncio.Server:
    """:func:`asyncio.start_server` with keepalive on every accepted connection.

    The values are checked first (``TypeError``/``ValueError``); the
    server is created without serving, each listening socket is
    configured (``setsockopt``), and only then does it start accepting
    (unless ``start_serving=False`` is passed), so no connection slips in
    unconfigured.  Each accepted connection gets what it does not inherit
    from its listener (nothing on Linux; see
    :data:`netkeepalive.servers.INHERITED`) before *client_connected_cb*
    runs; one the kernel refuses is closed instead, and the error goes to
    the event loop's exception handler.  Other keyword arguments go to
    :func:`asyncio.start_server`.
    """
    keepalive = ServerKeepAlive(
        idle=idle, interval=interval, probes=probes, user_timeout=user_timeout
    )
    start_serving = kwargs.pop("start_serving", True)

    def connected(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Optional[Awaitable[None]]:
        try:
            keepalive.configure_accepted(writer)
        except BaseException:
            writer.close()  # refused: the connection is not left open unserved
            raise
        return client_connected_cb(reader, writer)

    server = await asyncio.start_server(connected, host, port, start_serving=False, **kwargs)
    try:
        for sock in server.sockets:
            keepalive.configure_listener(sock)
        if start_serving:
            await server.start_serving()
    except BaseException:
        server.close()
        raise
    return server

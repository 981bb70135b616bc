"""httpx: clients and transports whose every connection gets keepalive.

httpx applies a transport's ``socket_options`` with ``setsockopt`` to each
new connection, but httpcore 1.0 drops them for connections to a proxy
(``HTTPProxy`` creates its ``ForwardHTTPConnection`` and
``TunnelHTTPConnection`` without them).  Everything here therefore adds
the options where every connection starts: the network backend's
``connect_tcp``, direct, through an HTTP proxy or a SOCKS proxy alike.

- :class:`Client` and :class:`AsyncClient` take every argument of
  :class:`httpx.Client` plus the keepalive settings; the transports httpx
  makes for them, including those for proxies from ``HTTP_PROXY``,
  ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``, get keepalive.
- :class:`HTTPTransport` and :class:`AsyncHTTPTransport` add
  :func:`netkeepalive.socket_options` to the caller's own list (which they
  keep, in front).

Needs httpx: ``pip install 'netkeepalive[httpx]'``.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple

try:
    import httpcore
    import httpx
except ImportError as exc:
    raise ImportError(
        "netkeepalive.httpx needs the 'httpx' package; install it with "
        "pip install 'netkeepalive[httpx]'"
    ) from exc

from ._convert import Milliseconds
from ._sockopts import socket_options as _keepalive_options

__all__ = ["AsyncClient", "AsyncHTTPTransport", "Client", "HTTPTransport"]

_SocketOption = Tuple[Any, ...]


def _merged(given: Optional[Iterable[_SocketOption]], ours: List[_SocketOption]) -> List[Any]:
    """*given* (as httpcore passed it), then each of *ours* not already in it."""
    options = list(given or ())
    options.extend(option for option in ours if option not in options)
    return options


class _KeepAliveBackend(httpcore.NetworkBackend):
    """A network backend that adds the keepalive options to every ``connect_tcp``."""

    def __init__(self, inner: httpcore.NetworkBackend, options: List[_SocketOption]) -> None:
        self.inner = inner
        self.options = options

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.NetworkStream:
        return self.inner.connect_tcp(
            host, port, timeout, local_address, _merged(socket_options, self.options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: Optional[float] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.NetworkStream:
        return self.inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _AsyncKeepAliveBackend(httpcore.AsyncNetworkBackend):
    """:class:`_KeepAliveBackend` for async pools."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, options: List[_SocketOption]) -> None:
        self.inner = inner
        self.options = options

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self.inner.connect_tcp(
            host, port, timeout, local_address, _merged(socket_options, self.options)
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: Optional[float] = None,
        socket_options: Optional[Iterable[_SocketOption]] = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self.inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _install(transport: Any, options: List[_SocketOption]) -> None:
    """Wrap the network backend of an httpx transport's httpcore pool.

    httpx keeps its pool (``ConnectionPool``, ``HTTPProxy`` or
    ``SOCKSProxy``) as ``transport._pool``; every connection the pool
    opens, those to a proxy included, calls ``_network_backend.connect_tcp``.
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, (_KeepAliveBackend, _AsyncKeepAliveBackend)):
        backend.options = _merged(backend.options, options)
        return
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _KeepAliveBackend(backend, options)  # type: ignore[union-attr]
    elif isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _AsyncKeepAliveBackend(backend, options)  # type: ignore[union-attr]
    else:
        raise TypeError(
            f"netkeepalive.httpx: {type(transport).__name__} of httpx {httpx.__version__} "
            f"(httpcore {httpcore.__version__}) has no httpcore pool with a network "
            f"backend at ._pool._network_backend; cannot add keepalive to its connections"
        )


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
        # httpcore leaves socket_options out of connections to a proxy.
        _install(self, merged)


class HTTPTransport(_KeepAliveTransport, httpx.HTTPTransport):
    """:class:`httpx.HTTPTransport` with keepalive on every connection.

    ``idle``, ``interval`` and ``user_timeout`` in ms, ``probes`` a count,
    checked and converted by :func:`netkeepalive.socket_options` (so on
    Windows before build 16299 ``idle`` and ``interval`` raise
    :class:`~netkeepalive.UnsupportedOptionError`).  Other arguments,
    ``socket_options`` and ``proxy`` included, are httpx's; the socket
    options also reach connections to a proxy.
    """


class AsyncHTTPTransport(_KeepAliveTransport, httpx.AsyncHTTPTransport):
    """:class:`httpx.AsyncHTTPTransport` with keepalive on every connection.

    The arguments are those of :class:`HTTPTransport`.
    """


#: The transports that open sockets (httpx < 0.28 also makes WSGI/ASGI ones for ``app=``).
_HTTP = (httpx.HTTPTransport, httpx.AsyncHTTPTransport)


class _KeepAliveClient:
    """What :class:`Client` and :class:`AsyncClient` share; put first among the bases."""

    def __init__(
        self,
        *,
        idle: Optional[Milliseconds] = None,
        interval: Optional[Milliseconds] = None,
        probes: Optional[int] = None,
        user_timeout: Optional[Milliseconds] = None,
        **kwargs: Any,
    ) -> None:
        #: The ``(level, option, value)`` tuples every connection gets.
        self.netkeepalive_options: List[_SocketOption] = list(
            _keepalive_options(
                idle=idle, interval=interval, probes=probes, user_timeout=user_timeout
            )
        )
        super().__init__(**kwargs)

    def _init_transport(self, *args: Any, **kwargs: Any) -> Any:
        transport = super()._init_transport(*args, **kwargs)  # type: ignore[misc]
        if transport is not kwargs.get("transport") and isinstance(transport, _HTTP):
            _install(transport, self.netkeepalive_options)  # one httpx made
        return transport

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> Any:
        transport = super()._init_proxy_transport(*args, **kwargs)  # type: ignore[misc]
        _install(transport, self.netkeepalive_options)
        return transport


class Client(_KeepAliveClient, httpx.Client):
    """:class:`httpx.Client` whose every connection gets keepalive.

    ``idle``, ``interval`` and ``user_timeout`` in ms, ``probes`` a count
    (see :func:`netkeepalive.socket_options`, which checks them first);
    every other argument is httpx's, so proxies still come from the
    environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``) when ``trust_env`` is true, and ``limits``, ``verify``,
    ``cert``, ``http1``, ``http2`` and ``proxy`` apply as usual.  The
    transports httpx builds from these arguments, the proxies' included,
    set the options in their ``connect_tcp``.  A ``transport`` or
    ``mounts`` you pass is used as given: pass a :class:`HTTPTransport`
    there.
    """


class AsyncClient(_KeepAliveClient, httpx.AsyncClient):
    """:class:`httpx.AsyncClient` whose every connection gets keepalive.

    The arguments are those of :class:`Client`.
    """

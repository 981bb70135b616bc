"""urllib3: pools whose connections get keepalive right after they connect.

A list of ``socket_options`` (see :func:`netkeepalive.socket_options`)
works where every option is a plain ``setsockopt``.  The classes here
instead call :func:`netkeepalive.configure` on each new connection's
socket as soon as urllib3 has connected it (before TLS, before the
request), so they also work where a platform needs more than
``setsockopt``, and they leave the caller's ``socket_options`` (urllib3's
default ``TCP_NODELAY`` included) as they are.

Needs urllib3: ``pip install 'netkeepalive[urllib3]'``.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, Mapping, MutableMapping, Optional, Tuple, Type

try:
    import urllib3
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool
except ImportError as exc:
    raise ImportError(
        "netkeepalive.urllib3 needs the 'urllib3' package; install it with "
        "pip install 'netkeepalive[urllib3]'"
    ) from exc

from . import _forksafe
from ._api import configure
from ._convert import Milliseconds
from ._sockopts import checked_options

__all__ = ["PoolManager", "ProxyManager", "keepalive_connection_class", "keepalive_pool_classes"]

_Options = Tuple[Tuple[str, Any], ...]


# One subclass per (base class, settings): pools create many connections.
# Made under the library's set-up lock (re-entrant: making a pool class
# makes its connection class), which os.fork() waits for.
_lock = _forksafe.lock
_classes: Dict[Tuple[type, _Options], type] = {}


def _cached(base: type, options: _Options, make: Callable[[], type]) -> type:
    with _lock:
        cls = _classes.get((base, options))
        if cls is None:
            cls = _classes[base, options] = make()
        return cls


def _connection_class(base: Type[Any], options: _Options) -> Type[HTTPConnection]:
    return _cached(base, options, lambda: _make_connection_class(base, options))


def _make_connection_class(base: Type[Any], options: _Options) -> type:
    kwargs = dict(options)

    def _new_conn(self: HTTPConnection) -> socket.socket:
        # urllib3 creates and connects the socket here (and applies its
        # socket_options); every connect(), plain, TLS or through a proxy,
        # starts with it.
        sock: socket.socket = base._new_conn(self)
        try:
            configure(sock, **kwargs)
        except BaseException:
            sock.close()
            raise
        return sock

    namespace = {
        "_new_conn": _new_conn,
        "netkeepalive_options": kwargs,
        "__module__": __name__,
        "__doc__": f"{base.__name__} that calls netkeepalive.configure() on each new socket.",
    }
    return type(f"KeepAlive{base.__name__}", (base,), namespace)


def keepalive_connection_class(
    base: Type[HTTPConnection] = HTTPConnection,
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> Type[HTTPConnection]:
    """A subclass of urllib3 connection class *base* that configures each new socket.

    After *base* has created and connected the socket, the subclass calls
    :func:`netkeepalive.configure` (``setsockopt`` for ``SO_KEEPALIVE`` and
    each option given; ``idle``, ``interval``, ``user_timeout`` in ms).  A
    refusal closes the socket and fails the connection attempt.  The values
    are checked here, so bad ones raise ``TypeError``/``ValueError`` at once.
    The same arguments return the same class.
    """
    options = checked_options(idle, interval, probes, user_timeout)
    return _connection_class(base, tuple(options.items()))


def _pool_class(base: Type[HTTPConnectionPool], options: _Options) -> Type[HTTPConnectionPool]:
    return _cached(base, options, lambda: _make_pool_class(base, options))


def _make_pool_class(base: Type[HTTPConnectionPool], options: _Options) -> type:
    conn_cls = _connection_class(base.ConnectionCls, options)
    namespace = {"ConnectionCls": conn_cls, "__module__": __name__}
    return type(f"KeepAlive{base.__name__}", (base,), namespace)


def keepalive_pool_classes(
    pool_classes_by_scheme: Mapping[str, Type[HTTPConnectionPool]],
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> Dict[str, Type[HTTPConnectionPool]]:
    """Subclasses of each pool class whose connections configure keepalive.

    Give it a pool manager's ``pool_classes_by_scheme`` and assign the
    result back; each subclass keeps its base's connection class (SOCKS
    included) and adds :func:`keepalive_connection_class`'s behaviour.
    """
    options = tuple(checked_options(idle, interval, probes, user_timeout).items())
    return {scheme: _pool_class(cls, options) for scheme, cls in pool_classes_by_scheme.items()}


def _install(manager: Any, options: Mapping[str, Any]) -> None:
    classes: MutableMapping[str, Type[HTTPConnectionPool]] = manager.pool_classes_by_scheme
    manager.pool_classes_by_scheme = {
        scheme: _pool_class(cls, tuple(options.items())) for scheme, cls in classes.items()
    }


class PoolManager(urllib3.PoolManager):
    """:class:`urllib3.PoolManager` whose connections get keepalive once connected.

    ``idle``, ``interval`` and ``user_timeout`` are in milliseconds,
    ``probes`` a count (``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``,
    ``TCP_USER_TIMEOUT``, ``TCP_KEEPCNT``); ``SO_KEEPALIVE`` is always
    turned on.  Every other argument, ``socket_options`` included, is
    urllib3's.
    """

    def __init__(
        self,
        num_pools: int = 10,
        headers: Optional[Mapping[str, str]] = None,
        *,
        idle: Optional[Milliseconds] = None,
        interval: Optional[Milliseconds] = None,
        probes: Optional[int] = None,
        user_timeout: Optional[Milliseconds] = None,
        **connection_pool_kw: Any,
    ) -> None:
        options = checked_options(idle, interval, probes, user_timeout)
        super().__init__(num_pools, headers, **connection_pool_kw)
        #: The keepalive settings, as keyword arguments for ``configure``.
        self.netkeepalive_options = options
        _install(self, options)


class ProxyManager(urllib3.ProxyManager):
    """:class:`urllib3.ProxyManager` whose connections get keepalive once connected.

    The keepalive arguments are those of :class:`PoolManager`; the
    connection to the proxy is the one configured.
    """

    def __init__(
        self,
        proxy_url: str,
        num_pools: int = 10,
        headers: Optional[Mapping[str, str]] = None,
        *,
        idle: Optional[Milliseconds] = None,
        interval: Optional[Milliseconds] = None,
        probes: Optional[int] = None,
        user_timeout: Optional[Milliseconds] = None,
        **kwargs: Any,
    ) -> None:
        options = checked_options(idle, interval, probes, user_timeout)
        super().__init__(proxy_url, num_pools, headers, **kwargs)
        #: The keepalive settings, as keyword arguments for ``configure``.
        self.netkeepalive_options = options
        _install(self, options)

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

from typing import Any, Dict, Mapping, Optional, Type

try:
    import urllib3
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool
except ImportError as exc:
    raise ImportError(
        "netkeepalive.urllib3 needs the 'urllib3' package; install it with "
        "pip install 'netkeepalive[urllib3]'"
    ) from exc

from ._convert import Milliseconds
from ._pools import connection_class, install_pool_classes, pool_class
from ._sockopts import checked_options

__all__ = ["PoolManager", "ProxyManager", "keepalive_connection_class", "keepalive_pool_classes"]


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
    return connection_class(base, tuple(options.items()))


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
    return {scheme: pool_class(cls, options) for scheme, cls in pool_classes_by_scheme.items()}


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
        install_pool_classes(self, options)


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
        install_pool_classes(self, options)

"""requests: a transport adapter that gives every connection keepalive.

Mount :class:`KeepAliveAdapter` on a session; each connection its pools
open is configured with :func:`netkeepalive.configure` right after it
connects (see :mod:`netkeepalive.urllib3`), including connections to a
proxy.

Needs requests: ``pip install 'netkeepalive[requests]'``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

try:
    from requests.adapters import HTTPAdapter
except ImportError as exc:
    raise ImportError(
        "netkeepalive.requests needs the 'requests' package; install it with "
        "pip install 'netkeepalive[requests]'"
    ) from exc

from ._convert import Milliseconds
from ._pools import install_pool_classes
from ._sockopts import checked_options

__all__ = ["KeepAliveAdapter"]


class KeepAliveAdapter(HTTPAdapter):
    """:class:`requests.adapters.HTTPAdapter` with keepalive on every connection.

    ``idle``, ``interval`` and ``user_timeout`` are in milliseconds,
    ``probes`` a count (``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``,
    ``TCP_USER_TIMEOUT``, ``TCP_KEEPCNT``); ``SO_KEEPALIVE`` is always
    turned on.  They are checked here (``TypeError``/``ValueError``).
    ``socket_options``, if given, replaces urllib3's default list (which
    sets ``TCP_NODELAY``) and is applied before the keepalive settings.
    Other keyword arguments are :class:`~requests.adapters.HTTPAdapter`'s::

        session = requests.Session()
        session.mount("https://", KeepAliveAdapter(idle=10_000, interval=5_000, probes=3))
    """

    # What requests pickles; requests declares it as a plain list.
    __attrs__ = [*HTTPAdapter.__attrs__, "netkeepalive_options", "socket_options"]  # noqa: RUF012

    def __init__(
        self,
        *,
        idle: Optional[Milliseconds] = None,
        interval: Optional[Milliseconds] = None,
        probes: Optional[int] = None,
        user_timeout: Optional[Milliseconds] = None,
        socket_options: Optional[Sequence[Tuple[int, int, Any]]] = None,
        **kwargs: Any,
    ) -> None:
        #: The keepalive settings, as keyword arguments for ``configure``.
        self.netkeepalive_options: Dict[str, Any] = checked_options(
            idle, interval, probes, user_timeout
        )
        #: The caller's socket options (``None``: urllib3's default).
        self.socket_options: Optional[List[Tuple[int, int, Any]]] = (
            None if socket_options is None else list(socket_options)
        )
        super().__init__(**kwargs)

    def _pool_kwargs(self, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        if self.socket_options is not None:
            kwargs.setdefault("socket_options", self.socket_options)
        return kwargs

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        """Create the pool manager as requests does, with keepalive connections."""
        super().init_poolmanager(connections, maxsize, block, **self._pool_kwargs(pool_kwargs))
        install_pool_classes(self.poolmanager, self.netkeepalive_options)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The proxy's pool manager as requests makes it, with keepalive connections."""
        known = proxy in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **self._pool_kwargs(proxy_kwargs))
        if not known:
            install_pool_classes(manager, self.netkeepalive_options)
        return manager

"""urllib3 connection and pool subclasses that configure keepalive.

One subclass per base class and settings, shared by the urllib3, requests
and botocore integrations (each of which first says which package it needs).
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, Mapping, MutableMapping, Tuple, Type

from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from . import _forksafe
from ._api import configure

__all__ = ["Options", "connection_class", "install_pool_classes", "pool_class"]

#: Checked keyword arguments of :func:`netkeepalive.configure`, as a hashable key.
Options = Tuple[Tuple[str, Any], ...]


# One subclass per (base class, settings): pools create many connections.
# Made under the library's set-up lock (re-entrant: making a pool class
# makes its connection class), which os.fork() waits for.
_lock = _forksafe.lock
_classes: Dict[Tuple[type, Options], type] = {}


def _cached(base: type, options: Options, make: Callable[[], type]) -> type:
    with _lock:
        cls = _classes.get((base, options))
        if cls is None:
            cls = _classes[base, options] = make()
        return cls


def connection_class(base: Type[Any], options: Options) -> Type[HTTPConnection]:
    return _cached(base, options, lambda: _make_connection_class(base, options))


def _make_connection_class(base: Type[Any], options: Options) -> type:
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
        "__module__": "netkeepalive.urllib3",
        "__doc__": f"{base.__name__} that calls netkeepalive.configure() on each new socket.",
    }
    return type(f"KeepAlive{base.__name__}", (base,), namespace)


def pool_class(base: Type[HTTPConnectionPool], options: Options) -> Type[HTTPConnectionPool]:
    return _cached(base, options, lambda: _make_pool_class(base, options))


def _make_pool_class(base: Type[HTTPConnectionPool], options: Options) -> type:
    conn_cls = connection_class(base.ConnectionCls, options)
    namespace = {"ConnectionCls": conn_cls, "__module__": "netkeepalive.urllib3"}
    return type(f"KeepAlive{base.__name__}", (base,), namespace)


def install_pool_classes(manager: Any, options: Mapping[str, Any]) -> None:
    """Replace *manager*'s pool classes by ones whose connections configure *options*."""
    classes: MutableMapping[str, Type[HTTPConnectionPool]] = manager.pool_classes_by_scheme
    manager.pool_classes_by_scheme = {
        scheme: pool_class(cls, tuple(options.items())) for scheme, cls in classes.items()
    }

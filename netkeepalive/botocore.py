"""botocore and boto3: keepalive on every connection a client opens.

botocore's only socket setting is ``Config(tcp_keepalive=True)``
(``SO_KEEPALIVE`` with the system's timers).  :func:`configure_client`
reaches the one place every connection of a client comes from: its HTTP
session (``botocore.httpsession.URLLib3Session``) keeps one
``pool_classes_by_scheme`` mapping that its pool manager and every proxy
manager use.  The pool classes there are wrapped as
:func:`netkeepalive.urllib3.keepalive_pool_classes` does, so each new
connection, direct or to a proxy, is configured with
:func:`netkeepalive.configure` as soon as it has connected.

This relies on botocore internals; they are checked on each call, and a
botocore whose client looks different raises ``TypeError`` naming its
version instead of silently doing nothing.

Needs botocore (boto3 brings it): ``pip install 'netkeepalive[botocore]'``.
"""

from __future__ import annotations

from typing import Any, Dict, MutableMapping, Optional, Type

try:
    import botocore
    import botocore.client
    import botocore.httpsession
except ImportError as exc:
    raise ImportError(
        "netkeepalive.botocore needs the 'botocore' package; install it with "
        "pip install 'netkeepalive[botocore]'"
    ) from exc

from urllib3.connectionpool import HTTPConnectionPool
from urllib3.poolmanager import PoolManager

from ._convert import Milliseconds
from ._pools import pool_class
from ._sockopts import checked_options
from .urllib3 import keepalive_pool_classes

__all__ = ["configure_client"]


def _unsupported(what: str) -> TypeError:
    return TypeError(
        f"configure_client: {what} (botocore {botocore.__version__}); netkeepalive "
        f"expects client._endpoint.http_session to be a botocore.httpsession.URLLib3Session "
        f"whose pool managers share its _pool_classes_by_scheme"
    )


def _http_session(client: Any) -> Any:
    if not isinstance(client, botocore.client.BaseClient):
        raise TypeError(
            f"configure_client: expected a botocore or boto3 client, got {type(client).__name__}"
        )
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if not isinstance(session, botocore.httpsession.URLLib3Session):
        raise _unsupported(f"the client's HTTP session is {type(session).__name__}")
    return session


def _pool_classes(session: Any) -> MutableMapping[str, Type[HTTPConnectionPool]]:
    classes = getattr(session, "_pool_classes_by_scheme", None)
    managers = [getattr(session, "_manager", None)]
    managers.extend(getattr(session, "_proxy_managers", {}).values())
    if not isinstance(classes, dict) or not all(
        isinstance(cls, type) and issubclass(cls, HTTPConnectionPool) for cls in classes.values()
    ):
        raise _unsupported("the HTTP session has no _pool_classes_by_scheme of urllib3 pools")
    for manager in managers:
        if not isinstance(manager, PoolManager) or manager.pool_classes_by_scheme is not classes:
            raise _unsupported("a pool manager does not use the session's pool classes")
    return classes


def _original(cls: Type[HTTPConnectionPool]) -> Type[HTTPConnectionPool]:
    """*cls* without an earlier call's keepalive subclass."""
    if hasattr(cls.ConnectionCls, "netkeepalive_options") and cls.__module__ == (
        keepalive_pool_classes.__module__
    ):
        base: Type[HTTPConnectionPool] = cls.__bases__[0]
        return base
    return cls


def configure_client(
    client: Any,
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
) -> Dict[str, Any]:
    """Give every connection *client* opens from now on keepalive; returns the settings.

    *client* is a botocore client (``boto3.client("s3")``,
    ``session.create_client(...)``; for a boto3 resource pass
    ``resource.meta.client``).  ``idle``, ``interval`` and ``user_timeout``
    in ms, ``probes`` a count: ``SO_KEEPALIVE``, ``TCP_KEEPIDLE``,
    ``TCP_KEEPINTVL``, ``TCP_KEEPCNT`` and ``TCP_USER_TIMEOUT`` set with
    :func:`netkeepalive.configure` right after each connection (direct or
    to a proxy from the client's ``Config(proxies=...)`` or the
    environment) has connected.  Idle pooled connections opened before the
    call are closed so that none is reused unconfigured.  A second call
    replaces the settings.

    :raises TypeError: *client* is not a botocore client, or this
        botocore's client is not built as expected (the message names the
        version).
    :raises ValueError: a value out of range (see :func:`netkeepalive.configure`).
    """
    options = checked_options(idle, interval, probes, user_timeout)
    session = _http_session(client)
    classes = _pool_classes(session)
    settings = tuple(options.items())  # checked above: not again for each class
    # Every manager holds this very mapping: updating it in place reaches
    # the pool manager and every proxy manager, present and future.
    classes.update(
        {scheme: pool_class(_original(cls), settings) for scheme, cls in classes.items()}
    )
    for manager in [session._manager, *session._proxy_managers.values()]:
        manager.clear()  # pools made before keep their class: start afresh
    return options

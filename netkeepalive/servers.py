"""Keepalive for every connection a server accepts.

A server never creates its connected sockets itself: ``accept()`` does.
:class:`ServerKeepAlive` configures the listening socket and then, for
each accepted connection, only what that connection does not inherit from
the listener on the running system (see :data:`INHERITED`).
:class:`KeepAliveMixin` does both for :mod:`socketserver` servers, and
:func:`netkeepalive.aio.start_server` for asyncio.
"""

from __future__ import annotations

import socket as _socket
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

from . import _backends
from ._api import configure
from ._convert import Milliseconds
from ._settings import Settings
from ._sockopts import checked_options
from .constants import LINUX

__all__ = ["INHERITED", "KeepAliveMixin", "ServerKeepAlive", "inherited_options"]

#: Per platform (table name), the knobs an accepted socket inherits from
#: the listening socket, as checked on real sockets by the test suite.
#: Linux copies ``SO_KEEPALIVE``, ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``,
#: ``TCP_KEEPCNT`` and ``TCP_USER_TIMEOUT`` to every connection whose
#: handshake completes after the listener was configured.  No other system
#: has been checked, so everywhere else each accepted connection is
#: configured on its own.  Kept for compatibility: the source is
#: :attr:`PlatformTable.inherited <netkeepalive.constants.PlatformTable.inherited>`.
INHERITED: Mapping[str, FrozenSet[str]] = {"linux": LINUX.inherited}


def inherited_options(platform: Optional[str] = None) -> FrozenSet[str]:
    """The knobs accepted sockets inherit on *platform* (default: this system).

    Knob names are ``"enable"`` (``SO_KEEPALIVE``), ``"idle"``,
    ``"interval"``, ``"probes"`` and ``"user_timeout"``; the empty set
    where inheritance has not been verified.
    """
    if platform is None:
        return _backends.backend().table.inherited
    return INHERITED.get(platform, frozenset())


def _is_listening(sock: Any) -> bool:
    """``getsockopt(SO_ACCEPTCONN)`` through the socket object; ``True`` if unknown."""
    number = getattr(_socket, "SO_ACCEPTCONN", None)
    getsockopt = getattr(sock, "getsockopt", None)
    if number is None or getsockopt is None:
        return True
    try:
        return bool(getsockopt(_socket.SOL_SOCKET, number))
    except OSError:
        return True


class ServerKeepAlive:
    """Keepalive settings for a listening socket and the connections it accepts.

    ``idle``, ``interval`` and ``user_timeout`` are in milliseconds,
    ``probes`` a count, as for :func:`netkeepalive.configure`; they are
    checked here, so a bad value fails before any server starts.

    Call :meth:`configure_listener` on every listening socket, best before
    ``listen()``, then :meth:`configure_accepted` on each accepted
    connection.  The latter makes no system call for options the
    platform's accepted sockets inherit (all five on Linux), but only once
    a listener was configured before it listened: a connection whose
    handshake completed earlier inherits nothing.  Otherwise it sets
    every option.
    """

    def __init__(
        self,
        *,
        idle: Optional[Milliseconds] = None,
        interval: Optional[Milliseconds] = None,
        probes: Optional[int] = None,
        user_timeout: Optional[Milliseconds] = None,
    ) -> None:
        self.options: Dict[str, Any] = checked_options(idle, interval, probes, user_timeout)
        # None: no listener yet; True: every listener was configured before
        # it listened; False: at least one was not.
        self._rely_on_inheritance: Optional[bool] = None
        self._per_connection: Optional[Tuple[bool, Dict[str, Any]]] = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({args})"

    def configure_listener(self, sock: Any) -> Settings:
        """Configure a listening socket (``setsockopt``) and return its settings.

        Best called between ``bind()`` and ``listen()``.  If *sock*
        already listens (``getsockopt(SO_ACCEPTCONN)``; assumed where that
        cannot be read, e.g. for a bare descriptor), connections may be
        waiting in its accept queue with the old settings, so
        :meth:`configure_accepted` keeps configuring every connection in
        full.
        """
        listening = _is_listening(sock)
        settings = configure(sock, **self.options)
        if listening:
            self._rely_on_inheritance = False
        elif self._rely_on_inheritance is None:
            self._rely_on_inheritance = True
        return settings

    def _accepted_plan(self) -> Tuple[bool, Dict[str, Any]]:
        plan = self._per_connection
        if plan is None:
            inherited = inherited_options()
            options = {k: v for k, v in self.options.items() if k not in inherited}
            plan = ("enable" not in inherited or bool(options), options)
            self._per_connection = plan
        return plan

    def configure_accepted(self, conn: Any) -> None:
        """Configure an accepted connection: what it does not inherit.

        Calls ``setsockopt`` only for options the running system does not
        copy from the listener (none on Linux) if every listener went
        through :meth:`configure_listener` before it listened; otherwise
        for every option.  Use :func:`netkeepalive.get_settings` to read
        the result.
        """
        if not self._rely_on_inheritance:
            configure(conn, **self.options)
            return
        needed, options = self._accepted_plan()
        if needed:
            configure(conn, **options)


class KeepAliveMixin:
    """A :mod:`socketserver` mixin: keepalive on every accepted connection.

    Put it first among the bases and set :attr:`keepalive`::

        class Server(KeepAliveMixin, socketserver.ThreadingTCPServer):
            keepalive = ServerKeepAlive(idle=10_000, interval=5_000, probes=3)

    ``server_bind`` configures the listening socket before it listens;
    ``get_request`` configures each accepted connection as
    :meth:`ServerKeepAlive.configure_accepted` does.
    """

    #: The settings to apply; the default only turns ``SO_KEEPALIVE`` on.
    keepalive: ServerKeepAlive = ServerKeepAlive()
    socket: _socket.socket

    def server_bind(self) -> None:
        """Bind as the server class does, then configure the listening socket."""
        super().server_bind()  # type: ignore[misc]
        self.keepalive.configure_listener(self.socket)

    def get_request(self) -> Tuple[_socket.socket, Any]:
        """Accept as the server class does, then configure the connection."""
        conn, addr = super().get_request()  # type: ignore[misc]
        try:
            self.keepalive.configure_accepted(conn)
        except BaseException:
            conn.close()
            raise
        return conn, addr

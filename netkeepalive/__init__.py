"""netkeepalive: decide how fast TCP notices a dead peer.

A port of Node's ``net-keepalive`` to Python: setters and getters for
``SO_KEEPALIVE``, ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT`` and
``TCP_USER_TIMEOUT``, calling the C library's ``setsockopt``/``getsockopt``
through ctypes.  Times are in milliseconds.

Layers, one module each: :mod:`._libc` (loader) → :mod:`.constants`
(per-OS option numbers) → :mod:`._sys` (platform backends) → :mod:`._fd`
(descriptors) → :mod:`._api` (this public surface).
"""

from __future__ import annotations

from ._api import (
    Settings,
    configure,
    get_keepalive,
    get_keepalive_idle,
    get_keepalive_interval,
    get_keepalive_probes,
    get_settings,
    get_user_timeout,
    set_keepalive,
    set_keepalive_idle,
    set_keepalive_interval,
    set_keepalive_probes,
    set_user_timeout,
)
from ._sockopts import socket_options
from .errors import LibraryNotFoundError, SocketOptionError, UnsupportedOptionError
from .tcp_info import TcpInfo, get_tcp_info

__version__ = "0.1.0"

# The original's camelCase names.
setKeepAliveInterval = set_keepalive_interval
getKeepAliveInterval = get_keepalive_interval
setKeepAliveProbes = set_keepalive_probes
getKeepAliveProbes = get_keepalive_probes
setUserTimeout = set_user_timeout
getUserTimeout = get_user_timeout

__all__ = [
    "LibraryNotFoundError",
    "Settings",
    "SocketOptionError",
    "TcpInfo",
    "UnsupportedOptionError",
    "__version__",
    "configure",
    "getKeepAliveInterval",
    "getKeepAliveProbes",
    "getUserTimeout",
    "get_keepalive",
    "get_keepalive_idle",
    "get_keepalive_interval",
    "get_keepalive_probes",
    "get_settings",
    "get_tcp_info",
    "get_user_timeout",
    "setKeepAliveInterval",
    "setKeepAliveProbes",
    "setUserTimeout",
    "set_keepalive",
    "set_keepalive_idle",
    "set_keepalive_interval",
    "set_keepalive_probes",
    "set_user_timeout",
    "socket_options",
]

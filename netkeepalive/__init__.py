"""netkeepalive: decide how fast TCP notices a dead peer.

A port of Node's ``net-keepalive`` to Python: setters and getters for
``SO_KEEPALIVE``, ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT`` and
``TCP_USER_TIMEOUT``, calling the C library's ``setsockopt``/``getsockopt``
through ctypes.  Times are in milliseconds.

Layers, one module each: :mod:`._libc` (loader) → :mod:`.constants`
(per-OS option numbers) → :mod:`._backends` (platform backends) → :mod:`._fd`
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
from .errors import LibraryNotFoundError, SocketOptionError, UnsupportedOptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._budget import KeepaliveParams, detect_within
    from ._install import (
        InstallPolicy,
        KeepaliveWarning,
        clamped_writes,
        install,
        installed,
        uninstall,
    )
    from ._settings import system_defaults
    from ._sockopts import keepalive_options, socket_options
    from .tcp_info import TcpInfo, get_tcp_info

#: Names whose modules load on first use: they pull in the option tables,
#: which ``import netkeepalive`` does not need (the setters load them on the
#: first call).
_LAZY = {
    "socket_options": "._sockopts",
    "detect_within": "._budget",
    "KeepaliveParams": "._budget",
    "system_defaults": "._settings",
    "TcpInfo": ".tcp_info",
    "get_tcp_info": ".tcp_info",
    "keepalive_options": "._sockopts",
    "install": "._install",
    "uninstall": "._install",
    "installed": "._install",
    "clamped_writes": "._install",
    "InstallPolicy": "._install",
    "KeepaliveWarning": "._install",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

# The original's camelCase names.
setKeepAliveInterval = set_keepalive_interval
getKeepAliveInterval = get_keepalive_interval
setKeepAliveProbes = set_keepalive_probes
getKeepAliveProbes = get_keepalive_probes
setUserTimeout = set_user_timeout
getUserTimeout = get_user_timeout

__all__ = [
    "InstallPolicy",
    "KeepaliveParams",
    "KeepaliveWarning",
    "LibraryNotFoundError",
    "Settings",
    "SocketOptionError",
    "TcpInfo",
    "UnsupportedOptionError",
    "__version__",
    "clamped_writes",
    "configure",
    "detect_within",
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
    "install",
    "installed",
    "keepalive_options",
    "setKeepAliveInterval",
    "setKeepAliveProbes",
    "setUserTimeout",
    "set_keepalive",
    "set_keepalive_idle",
    "set_keepalive_interval",
    "set_keepalive_probes",
    "set_user_timeout",
    "socket_options",
    "system_defaults",
    "uninstall",
]

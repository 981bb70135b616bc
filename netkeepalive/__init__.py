"""netkeepalive: decide how fast TCP notices a dead peer.

A port of Node's ``net-keepalive`` to Python: setters and getters for
``SO_KEEPALIVE``, ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT`` and
``TCP_USER_TIMEOUT``, calling the C library's ``setsockopt``/``getsockopt``
through ctypes.  Times are in milliseconds.

Layers, bottom up.  A module imports only from its own layer or the ones
below it, and no modules import each other in a circle (both checked by
``tests/test_layers.py``, which reads this list):

1. :mod:`.errors`, :mod:`._common` (the knob names), :mod:`._forksafe`
2. :mod:`._libc` (every ctypes prototype)
3. :mod:`._sysctl`, :mod:`.constants` (per-OS option tables), :mod:`._convert`
4. :mod:`._backends` (how an option reaches the kernel, per platform)
5. :mod:`._fd`, :mod:`._settings`, :mod:`._defaults`, :mod:`._budget`,
   :mod:`._sockopts`, :mod:`._atomic`, :mod:`._setsockopt_ceiling`, :mod:`._support`,
   :mod:`._access` (one accessor per option, and the general path)
6. :mod:`._api` (the setters and getters), :mod:`._policy` (install()'s
   precomputed writes), :mod:`.tcp_info`
7. :mod:`._install`, :mod:`.servers`, :mod:`.aio`, :mod:`._pools`, :mod:`.requests`,
   :mod:`.urllib3`, :mod:`.httpx`, :mod:`.aiohttp`, :mod:`.botocore`
8. this module (the public surface)
9. :mod:`._linux` (/proc, pidfd, bpf(2), the BPF programs, the silenced peer)
10. :mod:`.cgroup`
11. :mod:`.cli` (the ``netkeepalive`` command)
12. :mod:`.__main__`
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
from ._settings import system_defaults
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
    from ._sockopts import keepalive_options, socket_options
    from .tcp_info import TcpInfo, get_tcp_info

del TYPE_CHECKING

#: Names whose modules load on first use: they pull in the option tables,
#: which ``import netkeepalive`` does not need (the setters load them on the
#: first call).
_LAZY = {
    "socket_options": "._sockopts",
    "detect_within": "._budget",
    "KeepaliveParams": "._budget",
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

"""The BSDs' ``sysctlbyname(3)`` through ctypes, for the kernel's own numbers.

A release string (``uname -r``) says what the userland calls itself; the
kernel's version number says what the kernel does.  FreeBSD and DragonFly
report ``__FreeBSD_version``/``__DragonFly_version`` as ``kern.osreldate``,
NetBSD ``__NetBSD_Version__`` as ``kern.osrevision``; FreeBSD's tick rate is
``kern.hz``.  Every function returns ``None`` where the call fails (no such
function, no such name, an answer that is not an ``int``), and the caller
falls back to ``uname``.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional

__all__ = ["kernel_version", "sysctl_int"]

_INT_SIZE = ctypes.sizeof(ctypes.c_int)

#: sys.platform prefix -> the sysctl holding the kernel's version number.
VERSION_SYSCTLS = {
    "freebsd": "kern.osreldate",
    "dragonfly": "kern.osreldate",
    "netbsd": "kern.osrevision",
}


def _library() -> Any:
    """The C library (loaded once by :mod:`netkeepalive._libc`)."""
    from ._libc import libc

    return libc()


def sysctl_int(name: str) -> Optional[int]:
    """``sysctlbyname(name, &int, &size, NULL, 0)``; ``None`` if that fails."""
    try:
        function = _library().sysctlbyname
    except (OSError, AttributeError):  # no C library, or no such function (Linux)
        return None
    value = ctypes.c_int(0)
    size = ctypes.c_size_t(_INT_SIZE)
    try:
        failed = function(name.encode("ascii"), ctypes.byref(value), ctypes.byref(size), None, 0)
    except (OSError, TypeError, ctypes.ArgumentError):
        return None
    if failed != 0 or size.value != _INT_SIZE:
        return None
    return int(value.value)


def kernel_version(platform: str) -> Optional[int]:
    """The running kernel's version number for BSD *platform* (``sys.platform``)."""
    for prefix, name in VERSION_SYSCTLS.items():
        if platform.startswith(prefix):
            return sysctl_int(name)
    return None

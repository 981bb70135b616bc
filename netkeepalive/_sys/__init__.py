"""Platform backends: *how* an option reaches the kernel.

:mod:`netkeepalive.constants` says *what* to pass (level, number, unit);
a backend passes it: :mod:`._sys.unix` through the C library's
``setsockopt``/``getsockopt``.  :func:`backend` returns the one for the
running system, created on first use.
"""

from __future__ import annotations

import threading

from .base import Backend

TYPE_CHECKING = False  # no ``typing`` at run time: it is part of the import cost
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["Backend", "backend", "reset"]

_lock = threading.Lock()
_current: Optional[Backend] = None


def _create(platform: Optional[str] = None) -> Backend:
    from ..constants import table_for  # the tables load with the first backend

    table = table_for(platform)
    from .unix import UnixBackend

    return UnixBackend(table)


def backend() -> Backend:
    """The backend for the running system (created once, thread-safely)."""
    global _current
    current = _current
    if current is None:
        with _lock:
            if _current is None:
                _current = _create()
            current = _current
    return current


def reset() -> None:
    """Forget the backend; the next call detects the platform again."""
    global _current
    with _lock:
        _current = None

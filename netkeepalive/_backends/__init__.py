"""Platform backends: *how* an option reaches the kernel.

:mod:`netkeepalive.constants` says *what* to pass (level, number, unit);
a backend passes it: :mod:`._backends.unix` through the C library's
``setsockopt``/``getsockopt``, :mod:`._backends.windows` through ``ws2_32``.
:func:`backend` returns the one for the running system, created on first use.
"""

from __future__ import annotations

from .._forksafe import lock as _lock
from .base import Backend

TYPE_CHECKING = False  # no ``typing`` at run time: it is part of the import cost
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional

__all__ = ["Backend", "backend", "is_current", "on_change", "reset"]

_current: Optional[Backend] = None
#: Called (under the lock) when use() or reset() replaces the backend.
_listeners: List[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call *listener* whenever :func:`use` or :func:`reset` replaces the backend.

    What was built for the backend before (the public API's accessors)
    must not be used with the next one.
    """
    _listeners.append(listener)


def _changed() -> None:
    for listener in _listeners:
        listener()


def _create(platform: Optional[str] = None, lib: Any = None) -> Backend:
    from ..constants import KNOBS, table_for  # the tables load with the first backend

    table = table_for(platform)
    if table.name.startswith("win32"):
        from .windows import WindowsBackend, running_table

        return WindowsBackend(running_table() if platform is None else table, lib)
    from .unix import FallbackUnixBackend, IllumosBackend, UnixBackend

    if table.name == "illumos":
        return IllumosBackend(table, lib)
    options = (table.option(knob) for knob in KNOBS)
    if any(opt is not None and opt.fallback is not None for opt in options):
        return FallbackUnixBackend(table, lib)
    return UnixBackend(table, lib)


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


def is_current(candidate: Backend) -> bool:
    """Whether *candidate* is still the backend in use (no :func:`use`/:func:`reset` since)."""
    return _current is candidate


def use(platform: Optional[str], lib: Any) -> Backend:
    """Make the backend for table *platform* (``None``: detect) calling *lib*.

    For tests that simulate another system: *lib* stands in for the C
    library (or ``ws2_32``).
    """
    global _current
    with _lock:
        _current = _create(platform, lib)
        _changed()
        return _current


def reset() -> None:
    """Forget the backend; the next call detects the platform again."""
    global _current
    with _lock:
        _current = None
        _changed()

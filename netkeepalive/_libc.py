"""Layer 2: load the C library once, lazily, and thread-safely.

``import netkeepalive`` loads nothing: :func:`libc` (Unix-likes) or
:func:`ws2_32` (Windows) is called on the first socket-option call.
``ctypes.util.find_library`` may start a subprocess (``ldconfig``, ``gcc``),
so it must never run at import time.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, List, Optional

from ._forksafe import lock as _lock
from .errors import LibraryNotFoundError

__all__ = ["libc", "reset", "ws2_32"]

#: Names tried, in order, after ``find_library("c")`` and the interpreter's
#: own symbols: glibc, musl/BSD generic, macOS, FreeBSD, AIX.
WELL_KNOWN_NAMES = ("libc.so.6", "libc.so", "libc.dylib", "libc.so.7", "libc.a(shr_64.o)")

_lib: Optional[ctypes.CDLL] = None
_failure: Optional[LibraryNotFoundError] = None


def _find_library(name: str) -> Optional[str]:
    import ctypes.util  # imports subprocess-using helpers only when needed

    return ctypes.util.find_library(name)


def _open(name: Optional[str]) -> ctypes.CDLL:
    lib = ctypes.CDLL(name, use_errno=True)
    # Both symbols must resolve, or this is not a usable C library.
    lib.setsockopt  # noqa: B018
    lib.getsockopt  # noqa: B018
    return lib


def _load(find: Callable[[str], Optional[str]]) -> ctypes.CDLL:
    tried: List[str] = []
    found = find("c")
    candidates: List[Optional[str]] = []
    if found:
        candidates.append(found)
    else:
        tried.append("find_library('c'): nothing found")
    candidates.append(None)  # the interpreter's own symbols
    candidates.extend(n for n in WELL_KNOWN_NAMES if n != found)
    for name in candidates:
        try:
            return _open(name)
        except (OSError, AttributeError) as exc:
            label = "the interpreter's symbols (CDLL(None))" if name is None else repr(name)
            tried.append(f"{label}: {exc}")
    raise LibraryNotFoundError(
        "netkeepalive could not load the C library for setsockopt/getsockopt; tried "
        + "; ".join(tried)
    )


def libc() -> Any:
    """The C library, loaded on first use with ``use_errno=True``.

    Tries ``ctypes.util.find_library("c")``, then the interpreter's own
    symbols (``CDLL(None)``, which covers musl), then well-known names.
    Raises :class:`~netkeepalive.errors.LibraryNotFoundError` saying what was
    tried; the failure is remembered, so the search runs once.
    """
    lib = _lib
    if lib is not None:
        return lib
    return _load_once()


def _load_once() -> ctypes.CDLL:
    global _lib, _failure
    with _lock:
        if _lib is None:
            if _failure is not None:
                raise _failure
            try:
                _lib = _load(_find_library)
            except LibraryNotFoundError as exc:
                _failure = exc
                raise
        return _lib


#: The Windows Sockets library.
WS2_32 = "ws2_32"
_ws2: Any = None
_ws2_failure: Optional[LibraryNotFoundError] = None


def ws2_32() -> Any:
    """Windows Sockets (``ws2_32.dll``), loaded on first use with ``ctypes.WinDLL``.

    Errors are read with ``WSAGetLastError()`` right after each call, so no
    ``use_last_error`` copy is needed.  Raises
    :class:`~netkeepalive.errors.LibraryNotFoundError` (remembered, like
    :func:`libc`'s) where it cannot be loaded.
    """
    lib = _ws2
    if lib is not None:
        return lib
    return _load_ws2_once()


def _load_ws2_once() -> Any:
    global _ws2, _ws2_failure
    with _lock:
        if _ws2 is None:
            if _ws2_failure is not None:
                raise _ws2_failure
            win_dll = getattr(ctypes, "WinDLL", None)
            try:
                if win_dll is None:
                    raise OSError("ctypes.WinDLL exists only on Windows")
                lib = win_dll(WS2_32)
                for symbol in ("setsockopt", "getsockopt", "WSAIoctl", "WSAGetLastError"):
                    getattr(lib, symbol)
            except (OSError, AttributeError) as exc:
                _ws2_failure = LibraryNotFoundError(
                    f"netkeepalive could not load {WS2_32} for setsockopt/getsockopt/"
                    f"WSAIoctl: ctypes.WinDLL({WS2_32!r}): {exc}"
                )
                raise _ws2_failure from None
            _ws2 = lib
        return _ws2


def reset() -> None:
    """Forget the loaded libraries (and any failure); the next call loads again."""
    global _lib, _failure, _ws2, _ws2_failure
    with _lock:
        _lib = None
        _failure = None
        _ws2 = None
        _ws2_failure = None

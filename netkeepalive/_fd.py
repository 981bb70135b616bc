"""Layer 3: turn what the caller holds into a socket descriptor."""

from __future__ import annotations

import io
import socket

TYPE_CHECKING = False  # no ``typing`` at run time: it is part of the import cost
if TYPE_CHECKING:
    from typing import Any

__all__ = ["fileno"]

_ACCEPTED = (
    "a socket.socket, an object with fileno() (e.g. asyncio's TransportSocket), "
    "an asyncio StreamWriter or transport, or a non-negative int descriptor"
)
_socket_fileno = socket.socket.fileno
#: The largest descriptor a C ``int`` holds; ctypes would wrap a larger one.
_FD_MAX = 2**31 - 1


def _wide(fd: int, source: str) -> int:
    """*fd*, which does not fit a C ``int``: an error unless the backend takes it."""
    from . import _backends

    if _backends.backend().wide_descriptors:  # Windows' SOCKET: checked by the backend
        return fd
    raise ValueError(
        f"{source} {fd}, which does not fit a C int: a socket descriptor is 0 to {_FD_MAX}"
    )


def fileno(sock: Any) -> int:
    """The descriptor behind *sock*.

    A closed socket yields ``-1``, which the kernel then refuses with
    ``EBADF``.  Raises :class:`TypeError` for anything that has no
    descriptor and :class:`ValueError` for a negative ``int``, or one that
    does not fit a C ``int`` (ctypes would wrap it onto another descriptor)
    except where the backend takes wider handles (Windows' ``SOCKET``).
    """
    if type(sock) is socket.socket:
        return _socket_fileno(sock)
    if type(sock) is int or (isinstance(sock, int) and not isinstance(sock, bool)):
        if sock < 0:
            raise ValueError(f"a socket descriptor must be >= 0, got {int(sock)}")
        if sock > _FD_MAX:
            return _wide(int(sock), "got descriptor")
        return int(sock)
    method = getattr(sock, "fileno", None)
    if method is None:
        get_extra_info = getattr(sock, "get_extra_info", None)
        if get_extra_info is None:
            raise TypeError(f"expected {_ACCEPTED}; got {type(sock).__name__}")
        inner = get_extra_info("socket")
        if inner is None:
            # A closed asyncio transport no longer has a socket.
            return -1
        return fileno(inner)
    try:
        fd = method()
    except io.UnsupportedOperation:
        raise TypeError(
            f"{type(sock).__name__}.fileno() has no descriptor; expected {_ACCEPTED}"
        ) from None
    if type(fd) is not int:
        raise TypeError(f"{type(sock).__name__}.fileno() returned {type(fd).__name__}, not int")
    if fd > _FD_MAX or fd < -_FD_MAX - 1:  # -1 (closed) passes: the kernel says EBADF
        return _wide(fd, f"{type(sock).__name__}.fileno() returned")
    return fd

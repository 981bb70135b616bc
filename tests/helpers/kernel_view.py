"""What the kernel holds for a client's socket, read with the standard library only.

The client tests read the keepalive settings back with ``sock.getsockopt``
(never through netkeepalive) from the very socket the client library used.
When the library does not hand its socket out, :func:`find_socket` finds it
among this process's descriptors (``/proc/self/fd``) by its two addresses,
which the local server learnt from ``accept()``.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Mapping, NamedTuple, Optional, Tuple

import pytest

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="reads Linux's TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT/TCP_USER_TIMEOUT and /proc",
)

Address = Tuple[str, int]


class Kernel(NamedTuple):
    """The socket's options as Linux reports them (its units, not milliseconds)."""

    keepalive: int  # SO_KEEPALIVE, 0 or 1
    idle_s: int  # TCP_KEEPIDLE, seconds
    interval_s: int  # TCP_KEEPINTVL, seconds
    probes: int  # TCP_KEEPCNT
    user_timeout_ms: int  # TCP_USER_TIMEOUT, milliseconds


def expected(params: Mapping[str, Optional[int]]) -> Kernel:
    """What Linux reports after configuring *params* (``detect_within``'s, in ms).

    The idle time and interval in whole seconds; 0 for a knob left out.
    """
    return Kernel(
        1,
        int(params.get("idle") or 0) // 1000,
        int(params.get("interval") or 0) // 1000,
        int(params.get("probes") or 0),
        int(params.get("user_timeout") or 0),
    )


def read(sock: socket.socket) -> Kernel:
    """:class:`Kernel` for *sock*, with ``sock.getsockopt`` (Linux)."""
    tcp = socket.IPPROTO_TCP
    return Kernel(
        int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0),
        sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
        sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
        sock.getsockopt(tcp, socket.TCP_KEEPCNT),
        sock.getsockopt(tcp, getattr(socket, "TCP_USER_TIMEOUT", 18)),
    )


def httpx_socket(response: Any) -> socket.socket:
    """The socket an httpx *response* came over.

    httpx exposes the connection as the response's ``network_stream``
    extension; ``get_extra_info("socket")`` is its socket.
    """
    sock: socket.socket = response.extensions["network_stream"].get_extra_info("socket")
    return sock


def find_socket(local: Address, peer: Address) -> Optional[socket.socket]:
    """A duplicate of this process's TCP socket from *local* to *peer*, or ``None``.

    Walks ``/proc/self/fd``; the caller closes the duplicate (the original
    stays with its owner).
    """
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = os.dup(int(name))
        except OSError:  # closed meanwhile
            continue
        sock = socket.socket(fileno=dup)
        if _connects(sock, local, peer):
            return sock
        sock.close()
    return None


def _connects(sock: socket.socket, local: Address, peer: Address) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return False
    try:
        return sock.getsockname()[:2] == local and sock.getpeername()[:2] == peer
    except OSError:  # not connected
        return False


def read_peer(server_side: socket.socket) -> Kernel:
    """:class:`Kernel` of the client end of *server_side* (an accepted socket).

    The client end lives in this process: its local address is the
    accepted socket's peer, and its peer the accepted socket's address.
    """
    local = server_side.getpeername()[:2]
    peer = server_side.getsockname()[:2]
    sock = find_socket(local, peer)
    if sock is None:
        raise LookupError(f"no socket {local} -> {peer} in this process")
    with sock:
        return read(sock)

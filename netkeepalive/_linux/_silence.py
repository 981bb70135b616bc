"""A peer that goes silent without closing: the experiment behind the demo.

Linux only, no privileges needed.  :func:`silence` attaches a classic BPF
socket filter that drops every segment to one end of a TCP connection
(``setsockopt(SO_ATTACH_FILTER)`` with the single instruction
``ret #0``).  The kernel runs the filter before TCP sees a segment, so
that end never acknowledges anything again, yet its socket stays open and
nothing is sent to the other end: to its peer it looks exactly like a
host that vanished.

:func:`silent_pair` builds such a connection on loopback and
:func:`watch` follows the other end's ``TCP_INFO`` until the kernel gives
up on it.  The ``netkeepalive demo`` command and the test suite share them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Tuple

from .._fd import fileno
from .._libc import libc
from ..errors import SocketOptionError
from ..tcp_info import TcpInfo, get_tcp_info

__all__ = [
    "Outcome",
    "loopback_pair",
    "silence",
    "silent_pair",
    "watch",
]

#: The CPU architecture (``uname -m``); Windows has no ``os.uname``, and
#: this module must import there for ``netkeepalive demo`` to say why it
#: cannot run.
_MACHINE = os.uname().machine if hasattr(os, "uname") else ""
#: ``SO_ATTACH_FILTER`` (``asm-generic/socket.h``; parisc has its own number).
SO_ATTACH_FILTER = 0x401A if _MACHINE.startswith(("parisc", "hppa")) else 26
#: ``BPF_RET | BPF_K``: return the constant ``k`` (bytes to keep; 0 = drop).
_BPF_RET_K = 0x06


class _SockFilter(ctypes.Structure):
    """``struct sock_filter`` (``linux/filter.h``): one classic BPF instruction."""

    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    """``struct sock_fprog``: a program's length and its instructions."""

    _fields_ = [
        ("len", ctypes.c_ushort),
        ("filter", ctypes.POINTER(_SockFilter)),
    ]


def silence(sock: object) -> None:
    """Make *sock*'s end of a TCP connection drop every segment it receives.

    ``setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, {ret #0})``: from now on its
    TCP never sees (so never acknowledges) what the peer sends.  Needs no
    privileges.  Kernel refusals raise
    :class:`~netkeepalive.errors.SocketOptionError`.
    """
    fd = fileno(sock)
    program = (_SockFilter * 1)(_SockFilter(_BPF_RET_K, 0, 0, 0))
    prog = _SockFprog(1, program)
    if libc().setsockopt(
        fd, socket.SOL_SOCKET, SO_ATTACH_FILTER, ctypes.byref(prog), ctypes.sizeof(prog)
    ):
        raise SocketOptionError.from_errno(ctypes.get_errno(), "setsockopt", "SO_ATTACH_FILTER")


@contextlib.contextmanager
def loopback_pair(host: str = "127.0.0.1") -> Iterator[Tuple[socket.socket, socket.socket]]:
    """A connected ``(client, server)`` TCP pair on loopback *host*; closed on exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as listener:
        client = socket.create_connection(listener.getsockname()[:2])
        try:
            server, _ = listener.accept()
        except BaseException:
            client.close()
            raise
    with client, server:
        yield client, server


@contextlib.contextmanager
def silent_pair(host: str = "127.0.0.1") -> Iterator[Tuple[socket.socket, socket.socket]]:
    """A :func:`loopback_pair` whose server end is silenced with :func:`silence`.

    The server end stays open (nothing is closed or reset) but drops every
    segment from the client, so the client's keepalive probes and data go
    unanswered.  Both sockets are closed on exit.
    """
    with loopback_pair(host) as (client, server):
        silence(server)
        yield client, server


@dataclass
class Outcome:
    """What :func:`watch` saw; times are seconds since its *start*."""

    #: When the ``probes`` counter of ``TCP_INFO`` was seen to rise, one
    #: entry per new value: ``(seconds, probes)``.
    probes: List[Tuple[float, int]] = field(default_factory=list)
    #: The socket error the kernel reported (``errno.ETIMEDOUT`` for a dead
    #: peer), or ``None`` if the connection was still up at the limit.
    error: Optional[int] = None
    #: When the error was seen, or ``None``.
    failed_at: Optional[float] = None
    #: The last ``TCP_INFO`` read (after the error, when there was one).
    last: Optional[TcpInfo] = None

    @property
    def timed_out(self) -> bool:
        """Whether the kernel dropped the connection with ``ETIMEDOUT``."""
        return self.error == errno.ETIMEDOUT


#: Callback for each probe seen: ``(seconds since start, probes so far)``.
ProbeCallback = Callable[[float, int], None]


def watch(
    sock: socket.socket,
    start: float,
    limit: float,
    on_probe: Optional[ProbeCallback] = None,
    step: float = 0.01,
) -> Outcome:
    """Follow *sock* until the kernel reports an error or *limit* seconds pass.

    *start* is a :func:`time.monotonic` reading (e.g. when keepalive was
    switched on); *limit* counts from it.  Every *step* seconds the
    ``probes`` counter of ``TCP_INFO`` is read; a socket error wakes the
    wait at once and is collected with ``getsockopt(SO_ERROR)``.
    """
    outcome = Outcome()
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP)
    seen = 0
    deadline = start + limit
    while True:
        now = time.monotonic()
        info = get_tcp_info(sock)
        outcome.last = info
        if info.probes > seen:
            seen = info.probes
            outcome.probes.append((now - start, seen))
            if on_probe is not None:
                on_probe(now - start, seen)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            outcome.error, outcome.failed_at = err, now - start
            outcome.last = get_tcp_info(sock)  # read again: after the failure
            return outcome
        if now >= deadline:
            return outcome
        poller.poll(max(0, min(step, deadline - now)) * 1000)

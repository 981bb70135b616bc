"""A signal handler that uses the library never changes what the code it
interrupted reads or writes.

Python runs a signal handler between two instructions of the thread it
interrupts: right after a ``getsockopt`` returns, before the code that
called it has read its buffer, for instance.  Here a timer signal fires
every 100 µs and its handler reads and writes the options of *another*
socket, with other values, through the same functions the main loop calls;
every value the main loop reads must be its own socket's, and every value it
writes must land on its socket as written.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import sys
import time
from typing import Any, Callable, Iterator, List

import pytest

import netkeepalive as nk
from netkeepalive import _backends

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(signal, "setitimer"),
    reason="Linux kernel, interval timers",
)

TCP = socket.IPPROTO_TCP
#: Signals the handler must have run before a loop may stop.
SIGNALS = 2000
#: ... or this long, whichever comes first (a slow machine delivers fewer).
SECONDS = 10.0
#: The timer: one shot, armed again when the handler is done, so the code
#: it interrupts always runs this long between two handlers (a repeating
#: timer faster than the handler would run nothing but the handler).
INTERVAL = 0.0001


@pytest.fixture
def pair(listener: socket.socket) -> Iterator[List[socket.socket]]:
    """Two connected sockets with different values: ours, and the handler's."""
    ours = socket.create_connection(listener.getsockname())
    theirs = socket.create_connection(listener.getsockname())
    nk.configure(ours, idle=9000, interval=7000, probes=5, user_timeout=11000)
    nk.configure(theirs, idle=5000, interval=3000, probes=2, user_timeout=4000)
    yield [ours, theirs]
    ours.close()
    theirs.close()


def under_signals(handler: Callable[[], None], step: Callable[[], None]) -> int:
    """Run *step* in a loop while a timer signal runs *handler*; how often it ran."""
    ran = [0]
    stopping = [False]

    def on_signal(signum: int, frame: Any) -> None:
        ran[0] += 1
        handler()
        if not stopping[0]:
            signal.setitimer(signal.ITIMER_REAL, INTERVAL)

    previous = signal.signal(signal.SIGALRM, on_signal)
    signal.setitimer(signal.ITIMER_REAL, INTERVAL)
    try:
        deadline = time.monotonic() + SECONDS
        while ran[0] < SIGNALS and time.monotonic() < deadline:
            for _ in range(100):
                step()
    finally:
        stopping[0] = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert ran[0] > 100, "the timer signal hardly ran: nothing was tested"
    return ran[0]


def test_getters_read_their_own_socket(pair: List[socket.socket]) -> None:
    ours, theirs = pair
    wrong: List[str] = []

    def handler() -> None:
        nk.get_keepalive_interval(theirs)
        nk.get_settings(theirs)

    def step() -> None:
        interval = nk.get_keepalive_interval(ours)
        settings = nk.get_settings(ours)
        if interval != 7000:
            wrong.append(f"get_keepalive_interval: {interval}")
        if settings[1:] != (9000, 7000, 5, 11000):
            wrong.append(f"get_settings: {settings}")

    under_signals(handler, step)
    assert wrong == [], f"{len(wrong)} wrong reads, first: {wrong[:3]}"


def test_the_backends_general_path_reads_and_writes_its_own_socket(
    pair: List[socket.socket],
) -> None:
    """The path every validated call and every other platform takes."""
    ours, theirs = pair
    backend = _backends.backend()
    interval = backend.option("interval")
    probes = backend.option("probes")
    wrong: List[str] = []

    def handler() -> None:
        backend.get(theirs.fileno(), interval)
        backend.set(theirs.fileno(), probes, 2)

    def step() -> None:
        seconds = backend.get(ours.fileno(), interval)
        if seconds != 7:
            wrong.append(f"get: {seconds}")
        backend.set(ours.fileno(), probes, 5)
        if ours.getsockopt(TCP, socket.TCP_KEEPCNT) != 5:
            wrong.append(f"set: {ours.getsockopt(TCP, socket.TCP_KEEPCNT)}")

    under_signals(handler, step)
    assert wrong == [], f"{len(wrong)} wrong, first: {wrong[:3]}"
    assert theirs.getsockopt(TCP, socket.TCP_KEEPCNT) == 2


def test_a_refusal_keeps_its_own_errno(pair: List[socket.socket]) -> None:
    """A handler's refused calls do not change the errno of the call it interrupted."""
    del pair  # configured: the library is loaded before any signal
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # refuses TCP options
    gone = socket.socket()
    closed = gone.fileno()
    gone.close()  # EBADF for every call on it (the UDP socket was made first)
    wrong: List[str] = []

    def handler() -> None:
        for call in (lambda: nk.get_keepalive_interval(udp), lambda: nk.set_user_timeout(udp, 5)):
            with contextlib.suppress(OSError):
                call()

    def step() -> None:
        for name, call in (
            ("get", lambda: nk.get_keepalive_interval(closed)),
            ("set", lambda: nk.set_keepalive_probes(closed, 3)),
        ):
            try:
                call()
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    wrong.append(f"{name}: errno {exc.errno}")
            else:
                wrong.append(f"{name}: no error")

    try:
        under_signals(handler, step)
    finally:
        udp.close()
    assert wrong == [], f"{len(wrong)} wrong, first: {wrong[:3]}"

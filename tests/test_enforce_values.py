"""install(enforce=True) against every form Python's setsockopt takes a value in.

``socket.setsockopt`` takes an int (anything with ``__index__``) or any
bytes-like buffer, of which the kernel reads the first C int; every form
must meet the same ceiling, and a value Python itself refuses must still
be refused.  Each check reads the option back with ``getsockopt``.
"""

from __future__ import annotations

import array
import socket
import struct
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import netkeepalive as nk

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

TCP = socket.IPPROTO_TCP


class Disguised(int):
    """An int whose conversions disagree with the number Python's setsockopt writes."""

    def __int__(self) -> int:
        return 1

    def __index__(self) -> int:
        return 1


class Index:
    """Not an int, but has ``__index__``: setsockopt takes it as one."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


@pytest.fixture(autouse=True)
def _enforcing() -> Iterator[None]:
    nk.install(idle=11_000, probes=4, enforce=True)
    yield
    nk.uninstall()


@pytest.mark.parametrize(
    "value",
    [
        struct.pack("ii", 3600, 0),  # longer than an int: the kernel reads the first one
        bytearray(struct.pack("ii", 3600, 7)),
        array.array("i", [3600]),
        memoryview(array.array("i", [3600])),  # len() counts items, not bytes
        Disguised(3600),
        Index(3600),
    ],
    ids=["bytes8", "bytearray8", "array", "memoryview-of-array", "int-subclass", "index"],
)
def test_every_value_form_meets_the_ceiling(value: Any) -> None:
    with socket.socket() as sock:
        sock.setsockopt(TCP, socket.TCP_KEEPIDLE, value)
        assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 11
        sock.setsockopt(TCP, socket.TCP_KEEPCNT, 2)
        assert sock.getsockopt(TCP, socket.TCP_KEEPCNT) == 2  # fewer probes: kept


def test_level_and_option_given_through_index() -> None:
    with socket.socket() as sock:
        sock.setsockopt(Index(TCP), Index(socket.TCP_KEEPIDLE), 3600)  # type: ignore[call-overload]
        assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 11


@pytest.mark.parametrize("value", [2**31, 2**40, -(2**31) - 1])
def test_a_value_python_refuses_is_still_refused(value: int) -> None:
    with socket.socket() as plain:
        nk.uninstall()
        with pytest.raises((OverflowError, TypeError)) as unenforced:
            plain.setsockopt(TCP, socket.TCP_KEEPIDLE, value)
        nk.install(idle=11_000, probes=4, enforce=True)
        before = plain.getsockopt(TCP, socket.TCP_KEEPIDLE)
        with pytest.raises(unenforced.type):
            plain.setsockopt(TCP, socket.TCP_KEEPIDLE, value)
        assert plain.getsockopt(TCP, socket.TCP_KEEPIDLE) == before


def test_shorter_values_in_every_form_are_kept() -> None:
    with socket.socket() as sock:
        for value in (struct.pack("ii", 5, 0), array.array("i", [6]), Index(7), Disguised(8)):
            sock.setsockopt(TCP, socket.TCP_KEEPIDLE, value)
        assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 8
        sock.setsockopt(TCP, socket.TCP_KEEPIDLE, struct.pack("ii", 5, 0))
        assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 5


MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)


def _mptcp() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, MPTCP).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _mptcp(), reason="no MPTCP here (net.mptcp.enabled)")
def test_an_mptcp_socket_meets_the_ceiling() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, MPTCP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        sock.setsockopt(TCP, socket.TCP_KEEPIDLE, 3600)
        sock.setsockopt(TCP, socket.TCP_KEEPCNT, 9)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 11
        assert sock.getsockopt(TCP, socket.TCP_KEEPCNT) == 4


FORK_WHILE_COUNTING = r"""
import os, socket, sys, threading, time
import netkeepalive as nk
from netkeepalive import _setsockopt_ceiling as ceiling

nk.install(idle=11_000, enforce=True)
held = threading.Event()

def count_slowly():
    # Another thread in the middle of counting a clamped write when the fork comes.
    with ceiling._count_lock:
        held.set()
        time.sleep(0.5)

threading.Thread(target=count_slowly).start()
held.wait()
pid = os.fork()
if pid == 0:
    with socket.socket() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 3600)
        os._exit(0 if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 11 else 1)
print(os.waitpid(pid, 0)[1], flush=True)
"""


def test_a_fork_while_another_thread_counts_leaves_the_child_working() -> None:
    """The child of a fork made while a clamped write was being counted can still
    write (a lock held at the fork would stop its first clamped write forever)."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", FORK_WHILE_COUNTING], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        # The child hangs, and the parent waiting for it: end both.
        for line in subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split():
            os.kill(int(line), 9)
        proc.kill()
        proc.communicate()
        pytest.fail("the forked child hung on its first clamped write")
    assert (proc.returncode, out.strip()) == (0, "0")


def test_a_where_that_writes_options_itself_does_not_recurse() -> None:
    """``where`` may call setsockopt: its own writes pass as written, once."""
    seen = []

    def where(sock: socket.socket, address: Any) -> bool:
        seen.append(address)
        sock.setsockopt(TCP, socket.TCP_KEEPIDLE, 7200)  # a longer time, inside where
        return True

    nk.install(idle=11_000, probes=4, enforce=True, where=where)
    before = nk.clamped_writes().get("idle", 0)
    with socket.socket() as s:
        s.setsockopt(TCP, socket.TCP_KEEPIDLE, 3600)  # the application's write: clamped
        assert s.getsockopt(TCP, socket.TCP_KEEPIDLE) == 11
        assert len(seen) == 1  # where was asked once, for the application's write
        assert nk.clamped_writes().get("idle", 0) == before + 1

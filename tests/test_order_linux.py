"""Enable before idle, on this machine's real kernel (Linux).

The calls are recorded on their way to the real C library (only to see
their order); every value is read back from the kernel with the standard
library's ``socket.getsockopt``.
"""

from __future__ import annotations

import socket
import sys
from datetime import timedelta
from typing import Any, List, Tuple

import pytest
from test_retrofit import Child, needs_pidfd

import netkeepalive
import netkeepalive._backends
import netkeepalive._libc
from netkeepalive import cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

ENABLE = (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
IDLE = (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", 4))


class Recorder:
    """The real C library; each setsockopt's (level, option, fd) is noted first."""

    def __init__(self) -> None:
        self.real = netkeepalive._libc.libc()
        self.sets: List[Tuple[int, Tuple[int, int]]] = []

    def setsockopt(self, fd: int, level: int, option: int, value: Any, length: int) -> int:
        self.sets.append((fd, (level, option)))
        result: int = self.real.setsockopt(fd, level, option, value, length)
        return result

    def getsockopt(self, *args: Any) -> int:
        result: int = self.real.getsockopt(*args)
        return result

    def order(self, fd: int) -> List[Tuple[int, int]]:
        return [option for at, option in self.sets if at == fd]


@pytest.fixture
def recorder(fresh_backend: None) -> Recorder:
    """The recorder, installed as the backend's C library (fresh_backend undoes it)."""
    rec = Recorder()
    netkeepalive._backends.use(None, rec)
    return rec


def assert_enabled_before_last_idle(order: List[Tuple[int, int]]) -> None:
    last_idle = max(i for i, option in enumerate(order) if option == IDLE)
    assert order.index(ENABLE) < last_idle, order


@pytest.mark.parametrize("idle", [3_000, timedelta(seconds=3)], ids=["fast", "general"])
def test_configure_enables_before_the_last_idle_write(
    recorder: Recorder, client: socket.socket, idle: Any
) -> None:
    assert client.getsockopt(*ENABLE) == 0
    netkeepalive.configure(client, idle=idle, interval=2_000, probes=4)
    assert_enabled_before_last_idle(recorder.order(client.fileno()))
    assert client.getsockopt(*ENABLE) == 1
    assert client.getsockopt(*IDLE) == 3
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
    assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4


def test_set_keepalive_enables_before_the_last_idle_write(
    recorder: Recorder, client: socket.socket
) -> None:
    netkeepalive.set_keepalive(client, True, 5_000)
    assert recorder.order(client.fileno()) == [IDLE, ENABLE, IDLE]
    assert client.getsockopt(*ENABLE) == 1
    assert client.getsockopt(*IDLE) == 5


@needs_pidfd
def test_cli_set_enables_before_the_last_idle_write(recorder: Recorder) -> None:
    child = Child()
    try:
        before = child.settings()
        target = next(fd for fd, v in before.items() if not v["enabled"])
        status = cli.main(
            ["set", str(child.pid), "--fd", str(target), "--enable", "--idle", "9000"]
        )
        assert status == 0
        # The command borrows the child's socket under a new descriptor number.
        borrowed = {fd for fd, option in recorder.sets if option == ENABLE}
        assert len(borrowed) == 1
        assert_enabled_before_last_idle(recorder.order(borrowed.pop()))
        after = child.settings()[target]  # as the child reads its own socket
        assert after["enabled"] is True
        assert after["idle_ms"] == 9_000
    finally:
        child.close()

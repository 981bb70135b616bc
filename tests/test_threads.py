"""Concurrent calls never see each other's values or errno."""

from __future__ import annotations

import errno
import socket
import sys
import threading

import pytest

import netkeepalive as nk

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

THREADS = 12
ROUNDS = 300


def test_errno_and_buffers_are_per_thread(listener: socket.socket) -> None:
    """Three kinds of thread run at once, thousands of calls each:

    * failing on a closed descriptor (must see EBADF),
    * failing on a UDP socket (getsockopt must see EOPNOTSUPP, setsockopt
      ENOPROTOOPT, as Linux answers),
    * succeeding with its own values (must read back exactly its own).

    A shared errno or a shared value buffer would show up as a wrong errno
    or a neighbour's value.
    """
    addr = listener.getsockname()
    closed = socket.create_connection(addr)
    closed.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = [socket.create_connection(addr) for _ in range(THREADS)]
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def bad_fd(i: int) -> None:
        start.wait()
        for _ in range(ROUNDS):
            try:
                nk.set_keepalive_interval(closed, 1000)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    failures.append(f"thread {i}: closed fd gave errno {exc.errno}")
            else:
                failures.append(f"thread {i}: closed fd accepted")

    def wrong_proto(i: int) -> None:
        start.wait()
        for n in range(ROUNDS):
            expected = errno.EOPNOTSUPP if n % 2 else errno.ENOPROTOOPT
            try:
                if n % 2:
                    nk.get_keepalive_probes(udp)
                else:
                    nk.set_keepalive_probes(udp, 3)
            except OSError as exc:
                if exc.errno != expected:
                    failures.append(f"thread {i}: UDP gave errno {exc.errno}")
            else:
                failures.append(f"thread {i}: UDP accepted")

    def good(i: int) -> None:
        sock = tcp[i]
        start.wait()
        for n in range(ROUNDS):
            probes = 1 + (i * 7 + n) % 127
            nk.set_keepalive_probes(sock, probes)
            got = nk.get_keepalive_probes(sock)
            seen = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
            if got != probes or seen != probes:
                failures.append(f"thread {i}: set {probes}, read {got}, kernel {seen}")

    kinds = [bad_fd, wrong_proto, good]
    threads = [
        threading.Thread(target=kinds[i % 3], args=(i,), name=f"t{i}") for i in range(THREADS)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
    finally:
        udp.close()
        for s in tcp:
            s.close()
    assert failures == []

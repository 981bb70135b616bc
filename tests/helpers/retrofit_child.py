"""The target process of the ``netkeepalive show``/``set`` tests.

Holds a TCP listener on 127.0.0.1, two loopback connections to it (both
ends), an IPv6 loopback connection when ::1 works, a TCP socket that is
neither bound nor connected, a UDP socket and a pipe.  It gives every TCP
socket distinct keepalive settings, prints one JSON line describing its
descriptors, then answers commands, one per line on stdin:

``read``       print every socket's settings, read back by this process itself
``lo-down``    take the loopback interface down (only in a private network namespace)
``close FD``   close TCP socket FD
``replace FD`` close TCP socket FD and put a new, unconnected TCP socket at that number
``quit``       exit (so does end of input)

With ``--move-netns``, the process moves into a new network namespace of
its own (``unshare(CLONE_NEWNET)``) after opening its sockets, which stay
in the namespace they were opened in.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, List

import netkeepalive
from netkeepalive.tcp_info import get_tcp_info


def settings(sock: socket.socket) -> Dict[str, Any]:
    """The socket's keepalive settings, read with the standard library (Linux units)."""
    tcp = socket.IPPROTO_TCP
    return {
        "enabled": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
        "idle_ms": sock.getsockopt(tcp, socket.TCP_KEEPIDLE) * 1000,
        "interval_ms": sock.getsockopt(tcp, socket.TCP_KEEPINTVL) * 1000,
        "probes": sock.getsockopt(tcp, socket.TCP_KEEPCNT),
        "user_timeout_ms": sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
        "unanswered_probes": get_tcp_info(sock).probes,
    }


def address(sock: socket.socket, peer: bool) -> str:
    try:
        addr = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return "-"
    if addr[1] == 0:
        return "-"
    if sock.family == socket.AF_INET6:
        return f"[{addr[0]}]:{addr[1]}"
    return f"{addr[0]}:{addr[1]}"


CLONE_NEWNET = 0x40000000


def move_netns() -> None:
    """unshare(CLONE_NEWNET): this process's own network namespace from now on."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def main() -> int:
    if "--lo-up" in sys.argv:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.create_server(("127.0.0.1", 0))
    tcp: List[socket.socket] = [listener]
    for _ in range(2):
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        tcp += [client, server]
    try:
        listener6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pass
    else:
        client6 = socket.create_connection(listener6.getsockname()[:2])
        server6, _ = listener6.accept()
        listener6.close()
        tcp += [client6, server6]
    tcp.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))  # not bound, not connected
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    read_end, write_end = os.pipe()

    # Distinct values per socket; keepalive left off on the listener and the
    # unconnected socket.
    for i, sock in enumerate(tcp[1:-1], start=1):
        netkeepalive.configure(
            sock,
            idle=(10 + i) * 1000,
            interval=(2 + i) * 1000,
            probes=2 + i,
            user_timeout=1000 * i + i,
        )

    described = {
        "pid": os.getpid(),
        "tcp": {
            str(s.fileno()): {"local": address(s, False), "remote": address(s, True)} for s in tcp
        },
        "udp": udp.fileno(),
        "pipe": [read_end, write_end],
    }
    if "--move-netns" in sys.argv:
        move_netns()
    print(json.dumps(described), flush=True)

    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "read":
            os.write(write_end, b"x")
            roundtrip = os.read(read_end, 1) == b"x"
            state = {
                "tcp": {str(s.fileno()): settings(s) for s in tcp},
                "udp": {
                    "fd": udp.fileno(),
                    "inode": os.fstat(udp.fileno()).st_ino,
                    "so_keepalive": udp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    "local": address(udp, False),
                },
                "pipe": {
                    "inodes": [os.fstat(read_end).st_ino, os.fstat(write_end).st_ino],
                    "roundtrip": roundtrip,
                },
            }
            print(json.dumps(state), flush=True)
        elif command == "lo-down":
            subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
            print(json.dumps({"lo": "down"}), flush=True)
        elif command in ("close", "replace"):
            fd = int(argument)
            [old] = [s for s in tcp if s.fileno() == fd]
            at = tcp.index(old)
            if command == "close":
                old.close()
                del tcp[at]
            else:
                fresh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                os.dup2(fresh.fileno(), fd)  # closes the old socket's descriptor
                fresh.close()
                old.detach()
                tcp[at] = socket.socket(fileno=fd)
            inode = os.fstat(fd).st_ino if command == "replace" else None
            print(json.dumps({command: fd, "inode": inode}), flush=True)
        elif command == "quit":
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every multi-option entry point on real sockets, run under a seccomp filter.

The parent (test_atomic.py) starts this under ``seccomp_run.py`` with one
``setsockopt`` refused.  For each case, a fresh loopback connection gets
distinct settings (every option the filter lets through), then the entry
point runs; one JSON line per case reports the settings read with the
standard library before and after, and the error raised, if any.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from datetime import timedelta
from typing import Any, Callable, Dict, List

import netkeepalive

TCP = socket.IPPROTO_TCP
#: (level, option, value) given to each socket first, where the filter allows.
START = [
    (TCP, socket.TCP_KEEPIDLE, 111),
    (TCP, socket.TCP_KEEPINTVL, 22),
    (TCP, socket.TCP_KEEPCNT, 7),
    (TCP, socket.TCP_USER_TIMEOUT, 3333),
]


def read(sock: socket.socket) -> Dict[str, int]:
    return {
        "SO_KEEPALIVE": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "TCP_KEEPIDLE": sock.getsockopt(TCP, socket.TCP_KEEPIDLE),
        "TCP_KEEPINTVL": sock.getsockopt(TCP, socket.TCP_KEEPINTVL),
        "TCP_KEEPCNT": sock.getsockopt(TCP, socket.TCP_KEEPCNT),
        "TCP_USER_TIMEOUT": sock.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
    }


def _general(s: socket.socket) -> Any:
    return netkeepalive.configure(
        s,
        idle=timedelta(seconds=20),
        interval=timedelta(seconds=5),
        probes=4,
        user_timeout=timedelta(seconds=9),
    )


CASES: Dict[str, Callable[[socket.socket], Any]] = {
    "configure-fast": lambda s: netkeepalive.configure(
        s, idle=20_000, interval=5_000, probes=4, user_timeout=9_000
    ),
    "configure-general": _general,
    "configure-only-lower": lambda s: netkeepalive.configure(
        s, idle=20_000, interval=5_000, probes=4, user_timeout=1_000, only_lower=True
    ),
    "configure-disable": lambda s: netkeepalive.configure(s, enable=False, idle=20_000),
    "set_keepalive": lambda s: netkeepalive.set_keepalive(s, True, 20_000),
    "set_keepalive-general": lambda s: netkeepalive.set_keepalive(s, True, timedelta(seconds=20)),
}


def main() -> int:
    listener = socket.create_server(("127.0.0.1", 0))
    keep: List[socket.socket] = [listener]
    for name, case in CASES.items():
        sock = socket.create_connection(listener.getsockname())
        keep += [sock, listener.accept()[0]]
        for level, option, value in START:
            with contextlib.suppress(OSError):  # the refused one keeps the default
                sock.setsockopt(level, option, value)
        if name == "configure-disable":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        before = read(sock)
        report: Dict[str, Any] = {"case": name, "before": before, "error": None}
        try:
            case(sock)
        except Exception as exc:  # reported to the parent
            report["error"] = {
                "type": type(exc).__name__,
                "is_oserror": isinstance(exc, OSError),
                "errno": getattr(exc, "errno", None),
                "message": str(exc),
            }
        report["after"] = read(sock)
        print(json.dumps(report), flush=True)
    for s in keep:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A busy server for the ``netkeepalive set``/``show`` tests.

Holds a listener on 127.0.0.1 and COUNT loopback connections (both ends),
and keeps closing one connection and opening a new one, about once a
millisecond, until told to stop.  Prints one JSON line with its pid when
ready, then answers commands, one per line on stdin:

``stop``  stop the churn and print every TCP socket's descriptor, inode
          and ``TCP_KEEPIDLE`` in seconds, read with ``socket.getsockopt``
``quit``  exit (so does end of input)
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import sys
from typing import List, Tuple


def main() -> int:
    count = int(sys.argv[1])
    listener = socket.create_server(("127.0.0.1", 0))
    pairs: List[Tuple[socket.socket, socket.socket]] = []

    def connect() -> None:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        pairs.append((client, server))

    for _ in range(count):
        connect()
    print(json.dumps({"pid": os.getpid()}), flush=True)
    rng = random.Random(1)
    churning = True
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.001 if churning else None)
        if not ready:
            for s in pairs.pop(rng.randrange(len(pairs))):
                s.close()
            connect()
            continue
        command = sys.stdin.readline().strip()
        if command == "stop":
            churning = False
            held = [s for pair in pairs for s in pair] + [listener]
            state = {
                str(s.fileno()): {
                    "inode": os.fstat(s.fileno()).st_ino,
                    "idle_s": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                }
                for s in held
            }
            print(json.dumps(state), flush=True)
        else:  # quit, or end of input
            return 0


if __name__ == "__main__":
    raise SystemExit(main())

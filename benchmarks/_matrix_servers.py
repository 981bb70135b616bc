"""The servers of the dead-peer matrix (``benchmarks/dead_peer.py``).

Run inside the server's network namespace as
``python _matrix_servers.py KIND ADDRESS PORT``; prints ``listening`` once
it accepts connections and serves until killed.  Kinds:

``hold``
    accepts TCP connections, reads and discards whatever arrives and never
    answers (the plain socket and Node clients).
``http``
    HTTP/1.1 with persistent connections: ``GET /ok`` answers at once,
    ``GET /hang`` never answers, ``PUT`` reads the body and never answers
    (requests, httpx, aiohttp, curl).
``amqp``
    a **stub** AMQP 0-9-1 broker: the connection handshake (Start, Tune,
    Open-Ok) and nothing after it, for py-amqp where no RabbitMQ is
    installed.  Marked ``stub`` in the matrix's output.

Real servers (redis-server, PostgreSQL) are started by ``dead_peer.py``.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List


def _discard(conn: socket.socket) -> None:
    with conn:
        while conn.recv(65536):
            pass


def _accept_forever(listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


class _Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/hang"):
            time.sleep(86400)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        while self.rfile.read1(65536):
            pass


# -- AMQP 0-9-1, only as far as py-amqp's Connection() needs -----------------


def _frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


def _method(class_id: int, method_id: int, args: bytes) -> bytes:
    return _frame(0, struct.pack(">HH", class_id, method_id) + args)


def _longstr(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_frame(conn: socket.socket) -> bytes:
    _kind, _channel, size = struct.unpack(">BHI", _read_exact(conn, 7))
    return _read_exact(conn, size + 1)[:-1]


def _amqp(conn: socket.socket) -> None:
    try:
        _read_exact(conn, 8)  # b"AMQP\x00\x00\x09\x01"
        empty_table = struct.pack(">I", 0)
        start = b"\x00\x09" + empty_table + _longstr(b"PLAIN AMQPLAIN") + _longstr(b"en_US")
        conn.sendall(_method(10, 10, start))
        _read_frame(conn)  # Start-Ok
        conn.sendall(_method(10, 30, struct.pack(">HIH", 2047, 131072, 0)))
        _read_frame(conn)  # Tune-Ok
        _read_frame(conn)  # Open
        conn.sendall(_method(10, 41, b"\x00"))
    except (ConnectionError, OSError):
        conn.close()
        return
    _discard(conn)


def main(argv: List[str]) -> int:
    kind, address, port = argv[0], argv[1], int(argv[2])
    if kind == "http":
        server = ThreadingHTTPServer((address, port), _Http)
        server.daemon_threads = True
        print("listening", flush=True)
        server.serve_forever()
        return 0
    listener = socket.create_server((address, port), backlog=64)
    print("listening", flush=True)
    _accept_forever(listener, _amqp if kind == "amqp" else _discard)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

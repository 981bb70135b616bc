"""Minimal servers on 127.0.0.1 for the client tests.

The Redis and AMQP servers each speak just enough of their protocol for a
real client to connect and make one call, and record every connection's
client address; the HTTP test servers build on :class:`LoopbackHTTPServer`.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Address = tuple[str, int]


class _Server:
    """Accepts on 127.0.0.1 and runs *handle* for each connection on a thread."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.handle = handle
        self.clients: list[Address] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop)

    @property
    def address(self) -> Address:
        host, port = self.listener.getsockname()[:2]
        return host, port

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.clients.append(peer[:2])
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                self.handle(conn)
            except (ConnectionError, EOFError, socket.timeout):
                pass
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)

    def __enter__(self) -> _Server:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accepter.join(10)
        self.listener.close()
        for thread in self._threads:
            thread.join(10)
        if self.errors:
            raise self.errors[0]


class QuietHandler(BaseHTTPRequestHandler):
    """An HTTP request handler that logs nothing."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server on a free 127.0.0.1 port; run it with :func:`serving`."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


# -- RESP (Redis) --------------------------------------------------------------


def _read_line(stream: Any) -> bytes:
    line: bytes = stream.readline()
    if not line:
        raise EOFError
    return line.rstrip(b"\r\n")


def _bulk(text: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(text), text)


def _hello(args: list[bytes]) -> bytes:
    """``HELLO [protover]``'s reply: a map in RESP3, a flat array in RESP2."""
    proto = int(args[1]) if len(args) > 1 else 2
    fields = [_bulk(b"server"), _bulk(b"redis"), _bulk(b"version"), _bulk(b"7.4.0")]
    fields += [_bulk(b"proto"), b":%d\r\n" % proto]
    head = b"%%%d\r\n" % (len(fields) // 2) if proto == 3 else b"*%d\r\n" % len(fields)
    return head + b"".join(fields)


def _resp(conn: socket.socket) -> None:
    """Answer ``HELLO``, ``PING`` with ``+PONG``, anything else with ``+OK``."""
    stream = conn.makefile("rb")
    while True:
        header = _read_line(stream)
        if not header.startswith(b"*"):
            raise ValueError(f"expected a RESP array, got {header!r}")
        args = []
        for _ in range(int(header[1:])):
            size = int(_read_line(stream)[1:])
            args.append(stream.read(size + 2)[:size])
        command = args[0].upper()
        if command == b"HELLO":
            conn.sendall(_hello(args))
        else:
            conn.sendall(b"+PONG\r\n" if command == b"PING" else b"+OK\r\n")


@contextmanager
def resp_server() -> Iterator[_Server]:
    """A server answering Redis's RESP2 commands (``PING`` → ``PONG``)."""
    with _Server(_resp) as server:
        yield server


# -- AMQP 0-9-1 ------------------------------------------------------------------

_FRAME_METHOD = 1
_FRAME_END = b"\xce"
_START = (10, 10)
_START_OK = (10, 11)
_TUNE = (10, 30)
_TUNE_OK = (10, 31)
_OPEN = (10, 40)
_OPEN_OK = (10, 41)
_CLOSE = (10, 50)
_CLOSE_OK = (10, 51)


def _longstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _send_method(conn: socket.socket, method: tuple[int, int], args: bytes = b"") -> None:
    payload = struct.pack(">HH", *method) + args
    conn.sendall(struct.pack(">BHI", _FRAME_METHOD, 0, len(payload)) + payload + _FRAME_END)


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _recv_method(conn: socket.socket) -> tuple[int, int]:
    kind, _channel, size = struct.unpack(">BHI", _recv_exactly(conn, 7))
    payload = _recv_exactly(conn, size + 1)
    if kind != _FRAME_METHOD or payload[-1:] != _FRAME_END:
        raise ValueError(f"unexpected AMQP frame type {kind}")
    method: tuple[int, int] = struct.unpack(">HH", payload[:4])
    return method


def _expect(conn: socket.socket, method: tuple[int, int]) -> None:
    got = _recv_method(conn)
    if got != method:
        raise ValueError(f"expected AMQP method {method}, got {got}")


def _amqp(conn: socket.socket) -> None:
    """AMQP 0-9-1: protocol header, Connection.Start / Tune / Open-Ok, then Close-Ok on Close."""
    header = _recv_exactly(conn, 8)
    if header != b"AMQP\x00\x00\x09\x01":
        raise ValueError(f"not an AMQP 0-9-1 protocol header: {header!r}")
    # version 0-9, empty server-properties table, mechanisms, locales
    _send_method(
        conn, _START, b"\x00\x09" + _longstr(b"") + _longstr(b"PLAIN AMQPLAIN") + _longstr(b"en_US")
    )
    _expect(conn, _START_OK)
    _send_method(
        conn, _TUNE, struct.pack(">HIH", 2047, 131072, 0)
    )  # channel-max, frame-max, heartbeat
    _expect(conn, _TUNE_OK)
    _expect(conn, _OPEN)
    _send_method(conn, _OPEN_OK, b"\x00")  # reserved shortstr
    _expect(conn, _CLOSE)
    _send_method(conn, _CLOSE_OK)


@contextmanager
def amqp_server() -> Iterator[_Server]:
    """A server doing AMQP 0-9-1's connection handshake and close, nothing else."""
    with _Server(_amqp) as server:
        yield server


@contextmanager
def serving(server: Any) -> Iterator[threading.Thread]:
    """Run a ``socketserver`` server in a thread; shut it down and close it on exit."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield thread
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

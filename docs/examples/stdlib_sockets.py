"""The standard library: socket.create_connection, create_server, socketserver."""

from __future__ import annotations

import socket
import socketserver

import netkeepalive
from netkeepalive.servers import KeepAliveMixin, ServerKeepAlive


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    netkeepalive.configure(sock, idle=10_000, interval=5_000, probes=3, user_timeout=30_000)
    return sock


KEEPALIVE = ServerKeepAlive(idle=10_000, interval=5_000, probes=3, user_timeout=30_000)


def accept_one(listener: socket.socket) -> socket.socket:
    # KEEPALIVE.configure_listener(listener) ran before connections arrived;
    # configure_accepted() then sets only what the system does not copy
    # from the listener (nothing on Linux).
    conn, _ = listener.accept()
    KEEPALIVE.configure_accepted(conn)
    return conn


def make_listener() -> socket.socket:
    listener = socket.create_server(("127.0.0.1", 0))
    KEEPALIVE.configure_listener(listener)
    return listener


class SettingsHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        # self.request is the accepted socket, already configured.
        self.wfile.write(f"{netkeepalive.get_settings(self.request)}\n".encode())


class KeepAliveTCPServer(KeepAliveMixin, socketserver.ThreadingTCPServer):
    keepalive = ServerKeepAlive(idle=10_000, interval=5_000, probes=3)
    daemon_threads = True

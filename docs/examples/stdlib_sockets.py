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


def make_listener() -> socket.socket:
    # Configured between bind() and listen(), so accepted connections can
    # inherit the settings where the system copies them (Linux).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    KEEPALIVE.configure_listener(listener)
    listener.listen()
    return listener


def make_listener_with_create_server() -> socket.socket:
    # create_server() listens at once; connections may already be queued,
    # so configure_accepted() will configure each one in full.
    listener = socket.create_server(("127.0.0.1", 0))
    KEEPALIVE.configure_listener(listener)
    return listener


def accept_one(listener: socket.socket) -> socket.socket:
    # Sets only what this connection did not inherit from its listener.
    conn, _ = listener.accept()
    KEEPALIVE.configure_accepted(conn)
    return conn


class SettingsHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        # self.request is the accepted socket, already configured.
        self.wfile.write(f"{netkeepalive.get_settings(self.request)}\n".encode())


class KeepAliveTCPServer(KeepAliveMixin, socketserver.ThreadingTCPServer):
    keepalive = ServerKeepAlive(idle=10_000, interval=5_000, probes=3)
    daemon_threads = True

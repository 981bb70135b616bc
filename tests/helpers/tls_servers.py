"""HTTPS (HTTP/1.1 and HTTP/2) and tunnelling proxies on 127.0.0.1 for the httpx tests.

- :func:`make_certificates` writes a test CA, a server certificate for
  127.0.0.1 and a client certificate, all made here with ``cryptography``;
- :func:`https_server` answers ``GET`` over TLS with HTTP/2 (through the
  ``h2`` package) when the client offers it in ALPN, else HTTP/1.1;
- :func:`connect_proxy` and :func:`socks5_proxy` open a tunnel to the
  address the client asks for, refusing any that is not loopback.

Each records, when a request or tunnel request arrives, the client's own
socket as read with ``sock.getsockopt`` (:func:`kernel_view.read_peer`:
the client end is a socket in this process).
"""

from __future__ import annotations

import datetime
import ipaddress
import selectors
import socket
import ssl
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Optional

from helpers import kernel_view
from helpers.kernel_view import Kernel
from helpers.wire_servers import _recv_exactly, _Server


class Certificates(NamedTuple):
    ca: Path  # the CA's certificate: what the client trusts (verify=)
    server: Path  # certificate and key for 127.0.0.1, signed by the CA
    client: Path  # certificate and key for a client (cert=), signed by the CA


def make_certificates(directory: Path) -> Certificates:
    """A CA and two certificates it signed, as PEM files in *directory*."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def usage(*, ca: bool) -> Any:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    def builder(subject: str, key: Any) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("netkeepalive test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("netkeepalive test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(usage(ca=True), True)
        .sign(ca_key, hashes.SHA256())
    )
    issued = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(subject: str, purpose: Any, alt_names: list[Any]) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(usage(ca=False), True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), False)
            .add_extension(issued, False)
            .add_extension(x509.SubjectAlternativeName(alt_names), False)
            .sign(ca_key, hashes.SHA256())
        )
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return bytes(cert.public_bytes(serialization.Encoding.PEM) + private)

    files = Certificates(directory / "ca.pem", directory / "server.pem", directory / "client.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    files.server.write_bytes(leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, [loopback]))
    client_name = x509.DNSName("client.invalid")
    files.client.write_bytes(leaf("test client", ExtendedKeyUsageOID.CLIENT_AUTH, [client_name]))
    return files


# -- HTTPS: HTTP/1.1 and HTTP/2 --------------------------------------------------------


class Request(NamedTuple):
    client: tuple[str, int]  # the client's address, as accept() gave it
    protocol: str  # "h2" or "http/1.1"
    path: str
    client_certificate: Optional[str]  # the client certificate's subject CN, if any
    kernel: Kernel  # the client's socket, read when the request arrived


class _HTTPSServer(_Server):
    requests: list[Request]


_BODY = b"ok\n"


def _subject(tls: ssl.SSLSocket) -> Optional[str]:
    cert = tls.getpeercert()
    if not cert:
        return None
    fields = dict(pair for rdn in cert["subject"] for pair in rdn)
    return str(fields["commonName"])


def _serve_http1(tls: ssl.SSLSocket, record: Any) -> None:
    stream = tls.makefile("rb")
    while True:
        line = stream.readline()
        if not line:
            return
        while stream.readline() not in (b"\r\n", b"\n", b""):
            pass  # the headers: a GET has no body
        record("http/1.1", line.split()[1].decode())
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
        tls.sendall(head + _BODY)


def _serve_h2(tls: ssl.SSLSocket, record: Any) -> None:
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    while True:
        data = tls.recv(65_536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = {bytes(k): bytes(v) for k, v in event.headers or ()}
                record("h2", headers[b":path"].decode())
                conn.send_headers(
                    event.stream_id,
                    [(":status", "200"), ("content-type", "text/plain"), ("content-length", "3")],
                )
                conn.send_data(event.stream_id, _BODY, end_stream=True)
            elif isinstance(event, h2.events.ConnectionTerminated):
                tls.sendall(conn.data_to_send())
                return
        tls.sendall(conn.data_to_send())


@contextmanager
def https_server(certs: Certificates, *, http2: bool = False) -> Iterator[_HTTPSServer]:
    """HTTPS on 127.0.0.1 with *certs.server*; HTTP/2 too when *http2* (ALPN ``h2``).

    It asks for a client certificate from the test CA and records its
    name when one is sent.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    context.load_cert_chain(str(certs.server))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])

    def handle(conn: socket.socket) -> None:
        client = conn.getpeername()[:2]
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that does not trust the certificate hangs up
        with tls:

            def record(protocol: str, path: str) -> None:
                kernel = kernel_view.read_peer(tls)
                server.requests.append(Request(client, protocol, path, _subject(tls), kernel))

            try:
                if tls.selected_alpn_protocol() == "h2":
                    _serve_h2(tls, record)
                else:
                    _serve_http1(tls, record)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                pass

    server: _HTTPSServer = _HTTPSServer(handle)  # type: ignore[assignment]
    server.requests = []
    with server:
        yield server


# -- tunnelling proxies -------------------------------------------------------------


class Tunnel(NamedTuple):
    target: tuple[str, int]  # where the client asked to go
    kernel: Kernel  # the client's socket to the proxy, read when it asked


class _Proxy(_Server):
    tunnels: list[Tunnel]
    tls: Optional[ssl.SSLContext]  # the proxy's own TLS (an https:// proxy), or None
    tls_clients: list[tuple[str, int]]  # the clients that spoke TLS to the proxy


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: not resolved, not followed
        return False


def _receive(sock: socket.socket) -> bytes:
    """What *sock* has, TLS records already decrypted (which select() does not see) included."""
    data = sock.recv(65_536)
    while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
        data += sock.recv(sock.pending())
    return data


def _relay(conn: socket.socket, target: tuple[str, int]) -> None:
    """Copy bytes both ways between *conn* and a new connection to *target*, until EOF."""
    with (
        socket.create_connection(target, timeout=10) as upstream,
        selectors.DefaultSelector() as sel,
    ):
        sel.register(conn, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, conn)
        while True:
            ready = sel.select(timeout=10)
            if not ready:
                return
            for key, _ in ready:
                data = _receive(key.fileobj)  # type: ignore[arg-type]
                if not data:
                    return
                key.data.sendall(data)


def _proxy(handle: Any) -> _Proxy:
    proxy: _Proxy = _Proxy(lambda conn: handle(proxy, conn))  # type: ignore[assignment]
    proxy.tunnels = []
    proxy.tls = None
    proxy.tls_clients = []
    return proxy


def _connect(proxy: _Proxy, conn: socket.socket) -> None:
    """An HTTP proxy's ``CONNECT host:port``: 200 and a tunnel, or 403 off loopback."""
    if proxy.tls is None:
        _tunnel(proxy, conn)
        return
    with proxy.tls.wrap_socket(conn, server_side=True) as tls:
        proxy.tls_clients.append(tls.getpeername()[:2])
        _tunnel(proxy, tls)


def _tunnel(proxy: _Proxy, conn: socket.socket) -> None:
    stream = conn.makefile("rb")  # the client sends nothing more before the answer
    request = stream.readline().split()
    while stream.readline() not in (b"\r\n", b"\n", b""):
        pass
    host, _, port = request[1].decode().rpartition(":")
    host = host.strip("[]")
    proxy.tunnels.append(Tunnel((host, int(port)), kernel_view.read_peer(conn)))
    if request[0] != b"CONNECT" or not _loopback(host):
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        return
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    _relay(conn, (host, int(port)))


@contextmanager
def connect_proxy(certs: Optional[Certificates] = None) -> Iterator[_Proxy]:
    """An HTTP proxy on 127.0.0.1 that tunnels ``CONNECT`` to loopback addresses only.

    With *certs*, an ``https://`` proxy: the client speaks TLS to the proxy
    (with *certs.server*), and the tunnel runs inside that TLS.
    """
    proxy = _proxy(_connect)
    if certs is not None:
        proxy.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        proxy.tls.load_cert_chain(str(certs.server))
    with proxy:
        yield proxy


def _socks5(proxy: _Proxy, conn: socket.socket) -> None:
    """SOCKS5 (RFC 1928) without authentication, ``CONNECT`` to loopback addresses only."""
    _version, count = _recv_exactly(conn, 2)
    _recv_exactly(conn, count)  # the methods offered
    conn.sendall(b"\x05\x00")  # no authentication
    _version, command, _reserved, kind = _recv_exactly(conn, 4)
    if kind == 1:
        host = socket.inet_ntop(socket.AF_INET, _recv_exactly(conn, 4))
    elif kind == 4:
        host = socket.inet_ntop(socket.AF_INET6, _recv_exactly(conn, 16))
    else:  # 3: a domain name
        host = _recv_exactly(conn, _recv_exactly(conn, 1)[0]).decode()
    (port,) = struct.unpack(">H", _recv_exactly(conn, 2))
    proxy.tunnels.append(Tunnel((host, port), kernel_view.read_peer(conn)))
    if command != 1 or not _loopback(host):
        conn.sendall(b"\x05\x02\x00\x01" + bytes(6))  # not allowed by the ruleset
        return
    conn.sendall(b"\x05\x00\x00\x01" + bytes(6))  # succeeded
    _relay(conn, (host, port))


@contextmanager
def socks5_proxy() -> Iterator[_Proxy]:
    """A SOCKS5 proxy on 127.0.0.1 that connects to loopback addresses only."""
    with _proxy(_socks5) as proxy:
        yield proxy

"""Everything that stands for a socket reaches the same kernel socket."""

from __future__ import annotations

import asyncio
import selectors
import socket
import ssl
import sys

import pytest

import netkeepalive as nk

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

TCP = socket.IPPROTO_TCP


def test_int_descriptor(client: socket.socket) -> None:
    nk.set_keepalive_probes(client.fileno(), 6)
    assert client.getsockopt(TCP, socket.TCP_KEEPCNT) == 6
    assert nk.get_keepalive_probes(client.fileno()) == 6


def test_object_with_fileno(client: socket.socket) -> None:
    class Wrapper:
        def fileno(self) -> int:
            return client.fileno()

    nk.set_keepalive_interval(Wrapper(), 9000)
    assert client.getsockopt(TCP, socket.TCP_KEEPINTVL) == 9


def test_socket_subclass(listener: socket.socket) -> None:
    class MySocket(socket.socket):
        pass

    with MySocket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(listener.getsockname())
        nk.configure(sock, idle=8000)
        assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 8


def test_ssl_socket(listener: socket.socket) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    raw = socket.create_connection(listener.getsockname())
    # No handshake needed: the options live on the TCP socket underneath.
    with ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False) as tls:
        assert isinstance(tls, ssl.SSLSocket)
        settings = nk.configure(tls, idle=5000, interval=2000, probes=3)
        assert settings.detection_time == 11000
        assert tls.getsockopt(TCP, socket.TCP_KEEPINTVL) == 2


def test_selector_key_fileobj(client: socket.socket) -> None:
    with selectors.DefaultSelector() as sel:
        key = sel.register(client, selectors.EVENT_READ)
        nk.set_user_timeout(key.fileobj, 4321)
        assert nk.get_user_timeout(key.fd) == 4321


def test_asyncio_stream_writer_and_transport() -> None:
    async def main() -> None:
        accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await accepted.put(writer)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        server_writer = await accepted.get()
        try:
            assert nk.configure(writer, idle=3000, probes=2).probes == 2
            raw = writer.get_extra_info("socket")
            assert raw.getsockopt(TCP, socket.TCP_KEEPIDLE) == 3
            # The transport, and asyncio's TransportSocket, work as well.
            nk.set_keepalive_interval(writer.transport, 4000)
            assert raw.getsockopt(TCP, socket.TCP_KEEPINTVL) == 4
            assert nk.get_keepalive_interval(raw) == 4000
            nk.set_keepalive_probes(server_writer, 5)
            server_raw = server_writer.get_extra_info("socket")
            assert server_raw.getsockopt(TCP, socket.TCP_KEEPCNT) == 5
        finally:
            writer.close()
            await writer.wait_closed()
            server_writer.close()
            server.close()
            await server.wait_closed()
        # A closed transport has no socket left: the kernel's EBADF.
        with pytest.raises(OSError) as info:
            nk.get_keepalive(writer)
        assert info.value.errno == 9

    asyncio.run(main())


@pytest.mark.parametrize(
    "extra", [2**31, 2**32, 2**64, -(2**32)], ids=["2**31", "2**32", "2**64", "-2**32"]
)
def test_descriptor_beyond_a_c_int_is_refused_not_wrapped(
    client: socket.socket, extra: int
) -> None:
    # fd + 2**32 (or - 2**32) would reach C as fd itself: the call must not
    # touch that socket.
    big = client.fileno() + extra

    class Wrapper:
        def fileno(self) -> int:
            return big

    nk.set_keepalive_probes(client, 4)
    for holder in (big, Wrapper()) if big > 0 else (Wrapper(),):
        with pytest.raises(ValueError, match=rf"(descriptor|fileno\(\)).*{big}"):
            nk.set_keepalive_probes(holder, 7)
        with pytest.raises(ValueError, match=rf"(descriptor|fileno\(\)).*{big}"):
            nk.configure(holder, probes=7)
        with pytest.raises(ValueError, match=rf"(descriptor|fileno\(\)).*{big}"):
            nk.get_settings(holder)
        with pytest.raises(ValueError, match=rf"(descriptor|fileno\(\)).*{big}"):
            nk.get_tcp_info(holder)
    assert client.getsockopt(TCP, socket.TCP_KEEPCNT) == 4

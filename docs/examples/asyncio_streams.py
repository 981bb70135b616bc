"""asyncio streams: a keepalive client and a keepalive server."""

from __future__ import annotations

import asyncio

import netkeepalive
import netkeepalive.aio


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Runs for each accepted connection, already configured.
    print("server side:", netkeepalive.get_settings(writer))
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def serve(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    return await netkeepalive.aio.start_server(
        echo, host, port, idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )


async def ask(host: str, port: int, line: bytes) -> tuple[bytes, netkeepalive.Settings]:
    reader, writer = await asyncio.open_connection(host, port)
    # configure() takes the StreamWriter (or its transport) directly.
    settings = netkeepalive.configure(writer, idle=10_000, interval=5_000, probes=3)
    writer.write(line)
    answer = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return answer, settings


async def main() -> None:
    server = await serve()
    host, port = server.sockets[0].getsockname()[:2]
    async with server:
        answer, settings = await ask(host, port, b"hello\n")
    print("client side:", settings, answer)


if __name__ == "__main__":
    asyncio.run(main())

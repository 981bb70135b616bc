"""The clients of the dead-peer matrix (``benchmarks/dead_peer.py``).

Run inside the client's network namespace as
``python _matrix_clients.py CLIENT SCENARIO HOST PORT [--api MS]``.  Each
client connects through its library's ordinary code path and makes one
successful request, then prints ``ready``.  In the ``idle`` scenario it
then sends a request the server never answers and waits (nothing
unacknowledged: only keepalive can notice the silence); in ``inflight``
it first waits for a line on stdin (the peer has been silenced) and then
sends a request, whose data is never acknowledged (the user timeout
notices).  The first exception is printed as ``error TYPE: MESSAGE`` and
the client exits.

``--api MS`` is the method "library API": the client configures its own
connections with netkeepalive's integration for that library (or
``configure()`` on the socket), with ``detect_within(MS)``.

The Node and curl clients are not Python: :data:`NODE_CLIENT` is the Node
program and :func:`curl_command` builds curl's command line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional


def _go(scenario: str) -> None:
    if scenario == "inflight":
        sys.stdin.readline()


def _ready() -> None:
    print("ready", flush=True)


def plain_socket(host: str, port: int, scenario: str, params: Optional[Dict[str, Any]]) -> None:
    import socket

    sock = socket.create_connection((host, port))
    if params is not None:
        import netkeepalive

        netkeepalive.configure(sock, **params)
    _ready()
    _go(scenario)
    if scenario == "inflight":
        sock.sendall(b"x" * 100)
    sock.recv(1)


def requests_client(host: str, port: int, scenario: str, params: Optional[Dict[str, Any]]) -> None:
    import requests

    session = requests.Session()
    if params is not None:
        from netkeepalive.requests import KeepAliveAdapter

        session.mount("http://", KeepAliveAdapter(**params))
    url = f"http://{host}:{port}"
    session.get(url + "/ok").raise_for_status()
    _ready()
    _go(scenario)
    session.get(url + "/hang")


def httpx_client(host: str, port: int, scenario: str, params: Optional[Dict[str, Any]]) -> None:
    import httpx

    kwargs: Dict[str, Any] = {"timeout": None}
    if params is not None:
        import netkeepalive.httpx

        kwargs["transport"] = netkeepalive.httpx.HTTPTransport(**params)
    client = httpx.Client(**kwargs)
    url = f"http://{host}:{port}"
    client.get(url + "/ok").raise_for_status()
    _ready()
    _go(scenario)
    client.get(url + "/hang")


def aiohttp_client(host: str, port: int, scenario: str, params: Optional[Dict[str, Any]]) -> None:
    import asyncio

    import aiohttp

    async def main() -> None:
        kwargs: Dict[str, Any] = {}
        if params is not None:
            from netkeepalive.aiohttp import socket_factory

            kwargs["socket_factory"] = socket_factory(**params)
        timeout = aiohttp.ClientTimeout(total=None)
        connector = aiohttp.TCPConnector(**kwargs)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            url = f"http://{host}:{port}"
            async with session.get(url + "/ok") as response:
                await response.read()
            _ready()
            if scenario == "inflight":
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            async with session.get(url + "/hang") as response:
                await response.read()

    asyncio.run(main())


def redis_client(host: str, port: int, scenario: str, params: Optional[Dict[str, Any]]) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs: Dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}  # its own retries off
    if params is not None:
        import netkeepalive

        kwargs["socket_keepalive"] = True
        kwargs["socket_keepalive_options"] = netkeepalive.keepalive_options(**params)
    client = redis.Redis(host=host, port=port, **kwargs)
    client.ping()
    _ready()
    _go(scenario)
    if scenario == "inflight":
        client.ping()
    else:
        client.blpop(["netkeepalive-matrix"], 0)


def amqp_client(host: str, port: int, scenario: str, params: Optional[Dict[str, Any]]) -> None:
    import amqp

    kwargs: Dict[str, Any] = {"heartbeat": 0}
    if params is not None:
        import netkeepalive

        kwargs["socket_settings"] = netkeepalive.keepalive_options(**params)
    connection = amqp.Connection(f"{host}:{port}", **kwargs)
    connection.connect()
    _ready()
    _go(scenario)
    if scenario == "inflight":
        connection.channel()
    else:
        connection.drain_events()


def psycopg_client(host: str, port: int, scenario: str, params: Optional[Dict[str, Any]]) -> None:
    import psycopg

    conn = psycopg.connect(
        host=host, port=port, user="postgres", dbname="postgres", autocommit=True
    )
    if params is not None:
        import netkeepalive

        netkeepalive.configure(conn.pgconn.socket, **params)
    conn.execute("SELECT 1")
    _ready()
    _go(scenario)
    conn.execute("SELECT 1" if scenario == "inflight" else "SELECT pg_sleep(86400)")


CLIENTS: Dict[str, Callable[[str, int, str, Optional[Dict[str, Any]]], None]] = {
    "socket": plain_socket,
    "requests": requests_client,
    "httpx": httpx_client,
    "aiohttp": aiohttp_client,
    "redis": redis_client,
    "amqp": amqp_client,
    "psycopg": psycopg_client,
}

#: The Node client: ``node -e NODE_CLIENT HOST PORT SCENARIO``; a plain
#: ``net.Socket`` with Node's defaults (no keepalive).
NODE_CLIENT = r"""
const net = require('net');
const [host, port, scenario] = process.argv.slice(1);
const sock = net.connect(Number(port), host, () => {
  console.log('ready');
  if (scenario === 'inflight') {
    process.stdin.once('data', () => sock.write('x'.repeat(100)));
  }
});
sock.on('data', () => {});
sock.on('error', (e) => { console.log('error ' + e.code + ': ' + e.message); process.exit(0); });
sock.on('close', () => { console.log('error closed'); process.exit(0); });
"""


def curl_command(host: str, port: int, scenario: str) -> List[str]:
    """curl downloading from a server that never answers, or uploading stdin."""
    url = f"http://{host}:{port}/hang"
    if scenario == "inflight":
        return ["curl", "-sS", "-H", "Expect:", "-T", "-", url]
    return ["curl", "-sS", "-o", "/dev/null", url]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("scenario", choices=("idle", "inflight"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--api", type=int, metavar="MS")
    args = parser.parse_args(argv)
    params = None
    if args.api is not None:
        import netkeepalive

        params = dict(netkeepalive.detect_within(args.api))
    try:
        CLIENTS[args.client](args.host, args.port, args.scenario, params)
    except Exception as exc:  # the finding: how the client failed
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        return 0
    print("returned", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

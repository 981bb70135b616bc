"""aiohttp: keepalive through the connector's socket factory (aiohttp 3.12+)."""

from __future__ import annotations

import aiohttp

import netkeepalive.aiohttp


def make_session() -> aiohttp.ClientSession:
    # Call it inside a coroutine: aiohttp sessions belong to a running loop.
    factory = netkeepalive.aiohttp.socket_factory(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=factory))

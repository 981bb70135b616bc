"""httpx: keepalive through the transport's socket options."""

from __future__ import annotations

import httpx

import netkeepalive
import netkeepalive.httpx


def make_client() -> httpx.Client:
    options = netkeepalive.socket_options(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )
    return httpx.Client(transport=httpx.HTTPTransport(socket_options=options))


def make_async_client() -> httpx.AsyncClient:
    # The same, with the caller's own socket options kept in front.
    transport = netkeepalive.httpx.AsyncHTTPTransport(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000, retries=1
    )
    return httpx.AsyncClient(transport=transport)

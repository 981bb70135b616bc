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


def make_keepalive_client() -> netkeepalive.httpx.Client:
    # Every httpx.Client argument, plus the keepalive settings; proxies from
    # HTTP_PROXY/HTTPS_PROXY/ALL_PROXY/NO_PROXY still apply, and their
    # connections get keepalive too.
    return netkeepalive.httpx.Client(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000, timeout=10
    )


def make_sdk_http_client() -> netkeepalive.httpx.Client:
    # What the OpenAI and Anthropic SDKs take as http_client=, e.g.
    # openai.OpenAI(http_client=make_sdk_http_client()); the async SDK
    # clients take a netkeepalive.httpx.AsyncClient.
    return netkeepalive.httpx.Client(**netkeepalive.detect_within(60_000), timeout=600)

"""redis-py: keepalive through socket_keepalive_options."""

from __future__ import annotations

import redis

import netkeepalive


def make_client(host: str = "127.0.0.1", port: int = 6379) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=port,
        socket_keepalive=True,  # without it redis-py ignores the options
        socket_keepalive_options=netkeepalive.keepalive_options(
            idle=10_000, interval=5_000, probes=3, user_timeout=30_000
        ),
    )


# kombu and Celery (Redis broker) pass socket_keepalive=None to redis-py unless
# the transport options set it, so set both there:
CELERY_CONFIG = {
    "broker_transport_options": {
        "socket_keepalive": True,
        "socket_keepalive_options": netkeepalive.keepalive_options(
            **netkeepalive.detect_within(60_000)
        ),
    }
}

"""py-amqp (and kombu, Celery): keepalive through socket_settings."""

from __future__ import annotations

import amqp

import netkeepalive

# py-amqp's own defaults fill in whatever is left out, TCP_USER_TIMEOUT=1000 ms
# among them, so give all four (or **netkeepalive.detect_within(ms)).
SETTINGS = netkeepalive.keepalive_options(
    idle=10_000, interval=5_000, probes=3, user_timeout=30_000
)


def make_connection(host: str = "127.0.0.1", port: int = 5672) -> amqp.Connection:
    return amqp.Connection(host=f"{host}:{port}", socket_settings=SETTINGS, connect_timeout=10)


# kombu and Celery pass the same mapping through the transport options:
CELERY_CONFIG = {"broker_transport_options": {"socket_settings": SETTINGS}}

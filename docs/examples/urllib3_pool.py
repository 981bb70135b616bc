"""urllib3: a keepalive PoolManager, or socket options for a plain one."""

from __future__ import annotations

import urllib3
from urllib3.connection import HTTPConnection

import netkeepalive
import netkeepalive.urllib3


def make_pool_manager() -> urllib3.PoolManager:
    # Configures each socket with netkeepalive.configure() once connected;
    # works on every platform netkeepalive supports.
    return netkeepalive.urllib3.PoolManager(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )


def make_pool_manager_with_socket_options() -> urllib3.PoolManager:
    # A list of setsockopt() tuples; passing socket_options replaces
    # urllib3's default list, so keep TCP_NODELAY by adding to it.
    options = HTTPConnection.default_socket_options + netkeepalive.socket_options(
        idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )
    return urllib3.PoolManager(socket_options=options)

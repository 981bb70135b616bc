"""requests: mount KeepAliveAdapter on a session."""

from __future__ import annotations

import requests

from netkeepalive.requests import KeepAliveAdapter


def make_session() -> requests.Session:
    session = requests.Session()
    adapter = KeepAliveAdapter(
        idle=10_000,  # ms of silence before the first probe (TCP_KEEPIDLE)
        interval=5_000,  # ms between probes (TCP_KEEPINTVL)
        probes=3,  # unanswered probes before the drop (TCP_KEEPCNT)
        user_timeout=30_000,  # ms sent data may stay unacknowledged (TCP_USER_TIMEOUT)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

import socket

import netkeepalive


def test_configure_round_trip(client: socket.socket) -> None:
    s = netkeepalive.configure(client, idle=2000, interval=1000, probes=4, user_timeout=3000)
    assert s == netkeepalive.Settings(True, 2000, 1000, 4, 3000)

"""Keepalive probes as they appear on the loopback interface (root only).

An ``AF_PACKET`` socket sees every IPv4 packet that crosses ``lo``, before
any socket filter, so the probes the silenced server never gets to see are
counted here, with their spacing.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import List, Optional

import pytest

import netkeepalive
from netkeepalive._linux._silence import silent_pair

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
TCP_ACK = 0x10
TCP_RST = 0x04
TCP_SYN = 0x02

IDLE, INTERVAL, PROBES = 1000, 1000, 3  # ms, ms, count
SPACING = 0.25  # s

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(
        not hasattr(socket, "AF_PACKET"), reason="AF_PACKET capture exists on Linux only"
    ),
    pytest.mark.skipif(
        getattr(os, "geteuid", lambda: -1)() != 0,
        reason="capturing on lo with an AF_PACKET socket needs root (CAP_NET_RAW); "
        "run as root (as CI does) to check the probes on the wire",
    ),
]


@dataclass
class Segment:
    """A TCP segment seen on ``lo``: when, which ports, sequence number, flags, payload."""

    at: float
    sport: int
    dport: int
    seq: int
    flags: int
    payload: int


def _parse(packet: bytes, at: float) -> Optional[Segment]:
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_TCP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    sport, dport, seq = struct.unpack_from("!HHI", packet, ihl)
    offset = (packet[ihl + 12] >> 4) * 4
    return Segment(at, sport, dport, seq, packet[ihl + 13], total - ihl - offset)


def test_keepalive_probes_on_the_wire() -> None:
    capture = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    with capture:
        capture.bind(("lo", 0))
        capture.settimeout(0.05)
        packets: List[Segment] = []
        with silent_pair() as (client, _server):
            cport = client.getsockname()[1]
            sport = client.getpeername()[1]
            start = time.monotonic()
            netkeepalive.configure(client, idle=IDLE, interval=INTERVAL, probes=PROBES)
            predicted = (IDLE + INTERVAL * PROBES) / 1000
            deadline = start + predicted + 1.5
            while time.monotonic() < deadline:
                try:
                    data, address = capture.recvfrom(65536)
                except socket.timeout:
                    continue
                segment = _parse(data, time.monotonic() - start)
                if address[2] == PACKET_OUTGOING or segment is None:
                    continue
                if (segment.sport, segment.dport) == (cport, sport):
                    packets.append(segment)
                    if segment.flags & TCP_RST:
                        break
            error = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    assert error == errno.ETIMEDOUT
    # The handshake's last ACK carries the client's next sequence number;
    # a keepalive probe repeats the byte before it, with no new data.
    handshake = [s for s in packets if s.flags & TCP_ACK and not s.flags & TCP_SYN]
    assert handshake, "the capture missed the handshake"
    next_seq = handshake[0].seq
    probes = [
        s
        for s in packets
        if s.flags == TCP_ACK and s.payload <= 1 and s.seq == (next_seq - 1) % 2**32
    ]
    times = [round(s.at, 3) for s in probes]
    assert len(probes) == PROBES, times
    assert IDLE / 1000 - 0.2 <= probes[0].at <= IDLE / 1000 + 1.0, times
    for earlier, later in zip(probes, probes[1:]):
        assert abs(later.at - earlier.at - INTERVAL / 1000) <= SPACING, times
    # Giving up, the kernel resets the connection one interval after the last probe.
    resets = [s for s in packets if s.flags & TCP_RST]
    assert len(resets) == 1
    assert abs(resets[0].at - probes[-1].at - INTERVAL / 1000) <= SPACING
    assert predicted - 0.2 <= resets[0].at <= predicted + 1.0

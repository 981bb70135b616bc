"""Read a connection's state from the kernel: Linux's ``TCP_INFO``.

:func:`get_tcp_info` calls ``getsockopt(fd, IPPROTO_TCP, TCP_INFO, ...)``
through the same C library as the option setters and returns a
:class:`TcpInfo`.  Among much else it shows what keepalive is doing right
now: ``probes`` counts the keepalive (or zero-window) probes sent since the
peer last answered, and ``state`` turns to ``CLOSE`` when the kernel gives
up on the connection.

Units are the kernel's and are not converted: ``rto``, ``ato``, ``rtt``,
``rttvar``, ``rcv_rtt`` and ``min_rtt`` are in **microseconds**; the
``last_*`` times are in **milliseconds**.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
from typing import Any, Dict, Optional, Tuple

from . import _backends
from ._fd import fileno
from ._libc import libc
from .constants import IPPROTO_TCP as _IPPROTO_TCP
from .constants import LINUX as _LINUX
from .constants import TCP_STATES
from .errors import SocketOptionError, UnsupportedOptionError

__all__ = ["BASE_SIZE", "FULL_SIZE", "TCP_STATES", "TcpInfo", "get_tcp_info", "state_and_probes"]


_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64


class _TcpInfoStruct(ctypes.Structure):
    """``struct tcp_info`` from Linux's ``include/uapi/linux/tcp.h`` (up to 6.7)."""

    _fields_ = [
        ("tcpi_state", _u8),
        ("tcpi_ca_state", _u8),
        ("tcpi_retransmits", _u8),
        ("tcpi_probes", _u8),
        ("tcpi_backoff", _u8),
        ("tcpi_options", _u8),
        ("tcpi_snd_wscale", _u8, 4),
        ("tcpi_rcv_wscale", _u8, 4),
        ("tcpi_delivery_rate_app_limited", _u8, 1),
        ("tcpi_fastopen_client_fail", _u8, 2),
        ("tcpi_rto", _u32),
        ("tcpi_ato", _u32),
        ("tcpi_snd_mss", _u32),
        ("tcpi_rcv_mss", _u32),
        ("tcpi_unacked", _u32),
        ("tcpi_sacked", _u32),
        ("tcpi_lost", _u32),
        ("tcpi_retrans", _u32),
        ("tcpi_fackets", _u32),
        ("tcpi_last_data_sent", _u32),
        ("tcpi_last_ack_sent", _u32),
        ("tcpi_last_data_recv", _u32),
        ("tcpi_last_ack_recv", _u32),
        ("tcpi_pmtu", _u32),
        ("tcpi_rcv_ssthresh", _u32),
        ("tcpi_rtt", _u32),
        ("tcpi_rttvar", _u32),
        ("tcpi_snd_ssthresh", _u32),
        ("tcpi_snd_cwnd", _u32),
        ("tcpi_advmss", _u32),
        ("tcpi_reordering", _u32),
        ("tcpi_rcv_rtt", _u32),
        ("tcpi_rcv_space", _u32),
        ("tcpi_total_retrans", _u32),
        # Everything below may be missing on older kernels.
        ("tcpi_pacing_rate", _u64),
        ("tcpi_max_pacing_rate", _u64),
        ("tcpi_bytes_acked", _u64),
        ("tcpi_bytes_received", _u64),
        ("tcpi_segs_out", _u32),
        ("tcpi_segs_in", _u32),
        ("tcpi_notsent_bytes", _u32),
        ("tcpi_min_rtt", _u32),
        ("tcpi_data_segs_in", _u32),
        ("tcpi_data_segs_out", _u32),
        ("tcpi_delivery_rate", _u64),
        ("tcpi_busy_time", _u64),
        ("tcpi_rwnd_limited", _u64),
        ("tcpi_sndbuf_limited", _u64),
        ("tcpi_delivered", _u32),
        ("tcpi_delivered_ce", _u32),
        ("tcpi_bytes_sent", _u64),
        ("tcpi_bytes_retrans", _u64),
        ("tcpi_dsack_dups", _u32),
        ("tcpi_reord_seen", _u32),
        ("tcpi_rcv_ooopack", _u32),
        ("tcpi_snd_wnd", _u32),
        ("tcpi_rcv_wnd", _u32),
        ("tcpi_rehash", _u32),
        ("tcpi_total_rto", _u16),
        ("tcpi_total_rto_recoveries", _u16),
        ("tcpi_total_rto_time", _u32),
    ]


#: Bytes every Linux kernel since 2.6 returns: up to ``tcpi_total_retrans``.
BASE_SIZE: int = _TcpInfoStruct.tcpi_total_retrans.offset + 4
#: Bytes of the full structure declared here.
FULL_SIZE: int = ctypes.sizeof(_TcpInfoStruct)


@dataclasses.dataclass(frozen=True)
class TcpInfo:
    """One connection's ``struct tcp_info``, as read by :func:`get_tcp_info`.

    Field names are the C names without ``tcpi_``.  Fields up to
    ``total_retrans`` are always ``int``; the later ones are ``None`` when
    the running kernel returned a shorter structure that ends before them
    (each says which Linux version added it).
    """

    #: ``tcpi_state``: the TCP state number; see :attr:`state_name`.
    state: int
    #: ``tcpi_ca_state``: congestion-avoidance state (0 = Open).
    ca_state: int
    #: ``tcpi_retransmits``: retransmission timeouts in a row for the
    #: oldest unacknowledged segment.
    retransmits: int
    #: ``tcpi_probes``: keepalive or zero-window probes sent and not answered.
    probes: int
    #: ``tcpi_backoff``: exponential backoff of the retransmission timer.
    backoff: int
    #: ``tcpi_options``: ``TCPI_OPT_*`` bits negotiated (timestamps, SACK, ...).
    options: int
    #: ``tcpi_snd_wscale``: the peer's window scale.
    snd_wscale: int
    #: ``tcpi_rcv_wscale``: our window scale.
    rcv_wscale: int
    #: ``tcpi_delivery_rate_app_limited``: 1 if ``delivery_rate`` was limited
    #: by the application.
    delivery_rate_app_limited: int
    #: ``tcpi_fastopen_client_fail``: why a TCP Fast Open connect fell back.
    fastopen_client_fail: int
    #: ``tcpi_rto``: retransmission timeout, **microseconds**.
    rto: int
    #: ``tcpi_ato``: delayed-ACK timeout, **microseconds**.
    ato: int
    #: ``tcpi_snd_mss``: sending maximum segment size, bytes.
    snd_mss: int
    #: ``tcpi_rcv_mss``: receiving MSS estimate, bytes.
    rcv_mss: int
    #: ``tcpi_unacked``: segments sent and not yet acknowledged.
    unacked: int
    #: ``tcpi_sacked``: segments selectively acknowledged.
    sacked: int
    #: ``tcpi_lost``: segments considered lost.
    lost: int
    #: ``tcpi_retrans``: segments retransmitted and not yet acknowledged.
    retrans: int
    #: ``tcpi_fackets``: unused by current kernels (always 0).
    fackets: int
    #: ``tcpi_last_data_sent``: **milliseconds** since data was last sent.
    last_data_sent: int
    #: ``tcpi_last_ack_sent``: not tracked by Linux (always 0).
    last_ack_sent: int
    #: ``tcpi_last_data_recv``: **milliseconds** since data was last received.
    last_data_recv: int
    #: ``tcpi_last_ack_recv``: **milliseconds** since an ACK was last received.
    last_ack_recv: int
    #: ``tcpi_pmtu``: path MTU, bytes.
    pmtu: int
    #: ``tcpi_rcv_ssthresh``: receive-window clamp, bytes.
    rcv_ssthresh: int
    #: ``tcpi_rtt``: smoothed round-trip time, **microseconds**.
    rtt: int
    #: ``tcpi_rttvar``: round-trip time variation, **microseconds**.
    rttvar: int
    #: ``tcpi_snd_ssthresh``: slow-start threshold, segments.
    snd_ssthresh: int
    #: ``tcpi_snd_cwnd``: congestion window, segments.
    snd_cwnd: int
    #: ``tcpi_advmss``: MSS advertised to the peer, bytes.
    advmss: int
    #: ``tcpi_reordering``: reordering tolerance, segments.
    reordering: int
    #: ``tcpi_rcv_rtt``: receiver-side RTT estimate, **microseconds**.
    rcv_rtt: int
    #: ``tcpi_rcv_space``: receive-buffer autotuning space, bytes.
    rcv_space: int
    #: ``tcpi_total_retrans``: segments retransmitted over the connection's life.
    total_retrans: int
    #: ``tcpi_pacing_rate``: bytes per second (Linux 3.15).
    pacing_rate: Optional[int]
    #: ``tcpi_max_pacing_rate``: bytes per second (Linux 3.15).
    max_pacing_rate: Optional[int]
    #: ``tcpi_bytes_acked``: bytes acknowledged by the peer (Linux 4.1).
    bytes_acked: Optional[int]
    #: ``tcpi_bytes_received``: bytes received (Linux 4.1).
    bytes_received: Optional[int]
    #: ``tcpi_segs_out``: segments sent, retransmissions included (Linux 4.2).
    segs_out: Optional[int]
    #: ``tcpi_segs_in``: segments received (Linux 4.2).
    segs_in: Optional[int]
    #: ``tcpi_notsent_bytes``: bytes queued and not yet sent (Linux 4.6).
    notsent_bytes: Optional[int]
    #: ``tcpi_min_rtt``: minimum RTT seen, **microseconds** (Linux 4.6).
    min_rtt: Optional[int]
    #: ``tcpi_data_segs_in``: segments with data received (Linux 4.6).
    data_segs_in: Optional[int]
    #: ``tcpi_data_segs_out``: segments with data sent (Linux 4.6).
    data_segs_out: Optional[int]
    #: ``tcpi_delivery_rate``: bytes per second (Linux 4.9).
    delivery_rate: Optional[int]
    #: ``tcpi_busy_time``: **microseconds** spent sending data (Linux 4.10).
    busy_time: Optional[int]
    #: ``tcpi_rwnd_limited``: **microseconds** limited by the peer's window (Linux 4.10).
    rwnd_limited: Optional[int]
    #: ``tcpi_sndbuf_limited``: **microseconds** limited by the send buffer (Linux 4.10).
    sndbuf_limited: Optional[int]
    #: ``tcpi_delivered``: segments delivered (Linux 4.18).
    delivered: Optional[int]
    #: ``tcpi_delivered_ce``: segments delivered with ECN CE marks (Linux 4.18).
    delivered_ce: Optional[int]
    #: ``tcpi_bytes_sent``: bytes sent, retransmissions included (Linux 4.19).
    bytes_sent: Optional[int]
    #: ``tcpi_bytes_retrans``: bytes retransmitted (Linux 4.19).
    bytes_retrans: Optional[int]
    #: ``tcpi_dsack_dups``: duplicate segments reported by D-SACK (Linux 4.19).
    dsack_dups: Optional[int]
    #: ``tcpi_reord_seen``: reordering events seen (Linux 4.19).
    reord_seen: Optional[int]
    #: ``tcpi_rcv_ooopack``: out-of-order segments received (Linux 5.4).
    rcv_ooopack: Optional[int]
    #: ``tcpi_snd_wnd``: the peer's receive window, bytes (Linux 5.4).
    snd_wnd: Optional[int]
    #: ``tcpi_rcv_wnd``: our advertised receive window, bytes (Linux 6.2).
    rcv_wnd: Optional[int]
    #: ``tcpi_rehash``: path rehash attempts (Linux 6.2).
    rehash: Optional[int]
    #: ``tcpi_total_rto``: retransmission timeouts over the connection's life (Linux 6.7).
    total_rto: Optional[int]
    #: ``tcpi_total_rto_recoveries``: recoveries after a timeout (Linux 6.7).
    total_rto_recoveries: Optional[int]
    #: ``tcpi_total_rto_time``: **milliseconds** spent in those recoveries (Linux 6.7).
    total_rto_time: Optional[int]
    #: How many bytes of ``struct tcp_info`` the kernel returned.
    length: int

    @property
    def state_name(self) -> str:
        """The state as Linux names it, e.g. ``"ESTABLISHED"`` or ``"CLOSE"``."""
        return TCP_STATES.get(self.state, f"UNKNOWN({self.state})")


_FIELDS: Tuple[Tuple[str, int], ...] = tuple(
    # (C field name, bytes needed to contain it); bit-fields sit in the base part.
    (entry[0], getattr(_TcpInfoStruct, entry[0]).offset + ctypes.sizeof(entry[1]))
    for entry in _TcpInfoStruct._fields_
)


def _unsupported(platform: str) -> UnsupportedOptionError:
    exc = UnsupportedOptionError.for_knob(
        "TCP_INFO", platform, "netkeepalive reads struct tcp_info on Linux only"
    )
    exc.call = "getsockopt"
    return exc


def _read(fd: int, size: int = FULL_SIZE) -> TcpInfo:
    """``getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len)`` asking for *size* bytes.

    *size* is at most :data:`FULL_SIZE`: the kernel writes up to *size* bytes
    into a buffer of that size.
    """
    if not 0 <= size <= FULL_SIZE:
        raise ValueError(f"TCP_INFO: size {size} is outside the buffer's 0 to {FULL_SIZE} bytes")
    table = _backends.backend().table
    if table.name not in ("linux", "android") or table.tcp_info is None:
        raise _unsupported(table.name)
    info = _TcpInfoStruct()
    length = ctypes.c_uint32(size)
    if libc().getsockopt(
        fd, _IPPROTO_TCP, table.tcp_info, ctypes.byref(info), ctypes.byref(length)
    ):
        raise SocketOptionError.from_errno(ctypes.get_errno(), "getsockopt", "TCP_INFO")
    got = length.value
    if got < BASE_SIZE:
        exc = SocketOptionError(
            errno.EINVAL,
            f"returned {got} bytes of struct tcp_info, fewer than the {BASE_SIZE} "
            "every Linux kernel since 2.6 returns",
        )
        exc.call, exc.option = "getsockopt", "TCP_INFO"
        raise exc
    values: Dict[str, Any] = {
        name[5:]: getattr(info, name) if end <= got else None for name, end in _FIELDS
    }
    return TcpInfo(length=got, **values)


def get_tcp_info(sock: Any) -> TcpInfo:
    """Read the kernel's ``struct tcp_info`` for *sock* (``getsockopt(TCP_INFO)``).

    *sock* is anything the option setters take (a socket, an object with
    ``fileno()``, an asyncio writer or transport, an ``int`` descriptor).
    Fields the running kernel does not return are ``None``.  Linux only:
    elsewhere raises :class:`~netkeepalive.errors.UnsupportedOptionError`;
    kernel refusals raise :class:`~netkeepalive.errors.SocketOptionError`
    (e.g. ``getsockopt(TCP_INFO): [Errno 9] Bad file descriptor``).
    """
    return _read(fileno(sock))


def state_and_probes(fd: int) -> Tuple[int, int]:
    """``(tcpi_state, tcpi_probes)`` from the first 8 bytes of ``TCP_INFO`` (Linux).

    The same values as :func:`get_tcp_info`'s ``state`` and ``probes``,
    without building :class:`TcpInfo`: the cheap read for a command that
    looks at many sockets.  *fd* is a descriptor number.
    """
    head = (ctypes.c_uint8 * 8)()
    length = ctypes.c_uint32(ctypes.sizeof(head))
    if libc().getsockopt(fd, _IPPROTO_TCP, _LINUX.tcp_info, head, ctypes.byref(length)):
        raise SocketOptionError.from_errno(ctypes.get_errno(), "getsockopt", "TCP_INFO")
    return head[0], head[3]

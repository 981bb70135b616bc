"""``netkeepalive demo``: watch the kernel notice a silent peer, on loopback.

The command connects a client to a server on loopback, configures
keepalive on the client, then makes the server go silent without closing
anything (a socket filter drops every segment to it; no privileges
needed).  It prints the settings read back from the kernel, each
keepalive probe the kernel sends (from ``TCP_INFO``), the moment the
connection fails with ``ETIMEDOUT``, and the measured detection time
next to the predicted one.  Exit status: 0 when they agree within the
tolerance, 1 when they do not (or nothing was detected), 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import sys
import time
from typing import Optional, TextIO

from ._api import Settings, configure
from ._silence import silent_pair, watch
from .constants import detect_platform
from .tcp_info import get_tcp_info

__all__ = ["add_arguments", "run"]

DEFAULT_IDLE = 1000
DEFAULT_INTERVAL = 1000
DEFAULT_PROBES = 2
#: How much earlier / later than predicted the drop may come, ms.
DEFAULT_EARLY = 200
DEFAULT_LATE = 1000
#: How long to keep watching past the latest acceptable moment, ms.
_GRACE = 2000


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _loopback(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IP address, got {text!r}") from None
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"{text} is not a loopback address")
    return text


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to *parser* (``name`` is ``"demo"``)."""
    parser.add_argument(
        "--idle",
        type=_non_negative,
        default=DEFAULT_IDLE,
        metavar="MS",
        help=f"TCP_KEEPIDLE: silence before the first probe, ms (default {DEFAULT_IDLE})",
    )
    parser.add_argument(
        "--interval",
        type=_non_negative,
        default=DEFAULT_INTERVAL,
        metavar="MS",
        help=f"TCP_KEEPINTVL: time between probes, ms (default {DEFAULT_INTERVAL})",
    )
    parser.add_argument(
        "--probes",
        type=_non_negative,
        default=DEFAULT_PROBES,
        metavar="N",
        help=f"TCP_KEEPCNT: unanswered probes before the drop (default {DEFAULT_PROBES})",
    )
    parser.add_argument(
        "--user-timeout",
        type=_non_negative,
        default=None,
        metavar="MS",
        help="TCP_USER_TIMEOUT, ms; when set, Linux drops an idle connection after it "
        "instead of after TCP_KEEPCNT probes (default: left at the system default)",
    )
    parser.add_argument(
        "--early",
        type=_non_negative,
        default=DEFAULT_EARLY,
        metavar="MS",
        help=f"how much earlier than predicted still agrees, ms (default {DEFAULT_EARLY})",
    )
    parser.add_argument(
        "--late",
        type=_non_negative,
        default=DEFAULT_LATE,
        metavar="MS",
        help=f"how much later than predicted still agrees, ms (default {DEFAULT_LATE})",
    )
    parser.add_argument(
        "--host",
        type=_loopback,
        default="127.0.0.1",
        help="loopback address to run on, e.g. ::1 (default 127.0.0.1)",
    )


def _settings_text(s: Settings) -> str:
    user = " (system default)" if s.user_timeout == 0 else ""
    return "\n".join(
        [
            f"  SO_KEEPALIVE      {'on' if s.enabled else 'off'}",
            f"  TCP_KEEPIDLE      {s.idle} ms",
            f"  TCP_KEEPINTVL     {s.interval} ms",
            f"  TCP_KEEPCNT       {s.probes}",
            f"  TCP_USER_TIMEOUT  {s.user_timeout} ms{user}",
        ]
    )


def _formula(s: Settings, predicted: int) -> str:
    if s.user_timeout:
        rounds = (predicted - (s.idle or 0)) // (s.interval or 1)
        return (
            "TCP_USER_TIMEOUT is set, so Linux ignores TCP_KEEPCNT and drops the\n"
            f"  connection at the first keepalive timer after {s.user_timeout} ms"
            " with a probe unanswered:\n"
            f"  idle + interval x {rounds} = {s.idle} + {s.interval} x {rounds} = {predicted} ms"
        )
    return f"idle + interval x probes = {s.idle} + {s.interval} x {s.probes} = {predicted} ms"


def demo(
    idle: int = DEFAULT_IDLE,
    interval: int = DEFAULT_INTERVAL,
    probes: int = DEFAULT_PROBES,
    user_timeout: Optional[int] = None,
    early: int = DEFAULT_EARLY,
    late: int = DEFAULT_LATE,
    host: str = "127.0.0.1",
    out: TextIO = sys.stdout,
) -> int:
    """Run the experiment, printing to *out*; return the exit status (0 = agreed)."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with silent_pair(host) as (client, server):
        server_segs = get_tcp_info(server).segs_in
        settings = configure(
            client, idle=idle, interval=interval, probes=probes, user_timeout=user_timeout
        )
        # Linux counts the idle time from the last segment received
        # (net/ipv4/tcp.c keepalive_time_elapsed), and configure() writes
        # TCP_KEEPIDLE again after SO_KEEPALIVE=1, which arms the timer from
        # that moment: measure from it, not from the configure() call.
        quiet = get_tcp_info(client)
        start = time.monotonic() - min(quiet.last_data_recv, quiet.last_ack_recv) / 1000
        predicted = settings.detection_time
        assert predicted is not None  # keepalive was just switched on
        local, peer = client.getsockname(), client.getpeername()
        say("netkeepalive demo: the peer goes silent; when does the kernel notice?")
        say()
        say(f"client {local[0]} port {local[1]} -> server {peer[0]} port {peer[1]}")
        say("server end silenced: a socket filter drops every segment sent to it")
        say("(its socket stays open; nothing is closed, reset or sent)")
        say()
        say("client settings read back from the kernel (getsockopt):")
        say(_settings_text(settings))
        say()
        say(f"predicted detection: {_formula(settings, predicted)}")
        say()
        say(f"{0:8.3f} s  the client last heard from the server; keepalive on")

        def on_probe(seconds: float, count: int) -> None:
            say(f"{seconds:8.3f} s  keepalive probe {count} sent (TCP_INFO probes = {count})")

        limit_ms = predicted + late + _GRACE
        outcome = watch(client, start, limit_ms / 1000, on_probe)
        state = outcome.last.state_name if outcome.last else "?"
        if outcome.error is None or outcome.failed_at is None:
            say(f"{limit_ms / 1000:8.3f} s  still {state}")
            say()
            say(f"FAIL: no error within {limit_ms} ms; predicted {predicted} ms")
            return 1
        name = errno.errorcode.get(outcome.error, str(outcome.error))
        say(
            f"{outcome.failed_at:8.3f} s  connection dropped: {name} "
            f"({os.strerror(outcome.error)}), state {state}"
        )
        after = get_tcp_info(server).segs_in
        if server_segs is not None and after is not None:
            say(f"{'':10}  (the server's TCP received {after - server_segs} segments meanwhile)")
        measured = round(outcome.failed_at * 1000)
        diff = measured - predicted
        agreed = outcome.timed_out and -early <= diff <= late
        say()
        say(
            f"measured {measured} ms, predicted {predicted} ms, difference {diff:+d} ms "
            f"(tolerance -{early}/+{late} ms): {'OK' if agreed else 'FAIL'}"
        )
        if not outcome.timed_out:
            say(f"FAIL: expected ETIMEDOUT, got {name}")
        return 0 if agreed else 1


def run(name: str, args: argparse.Namespace) -> int:
    """Run ``netkeepalive demo`` with parsed *args*; return the exit status."""
    platform = detect_platform()
    if platform not in ("linux", "android"):
        print(
            f"netkeepalive {name}: needs Linux (TCP_INFO and SO_ATTACH_FILTER); "
            f"this system is {platform}",
            file=sys.stderr,
        )
        return 1
    try:
        return demo(
            idle=args.idle,
            interval=args.interval,
            probes=args.probes,
            user_timeout=args.user_timeout,
            early=args.early,
            late=args.late,
            host=args.host,
        )
    except ValueError as exc:
        print(f"netkeepalive {name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"netkeepalive {name}: {exc}", file=sys.stderr)
        return 1

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

With ``--detect-within MS`` the settings are :func:`netkeepalive.detect_within`'s
for that budget, and a second silenced connection, configured the same
way, sends data that is never acknowledged: the command shows both the
idle connection (keepalive) and the one with data in flight (user
timeout) failing within the budget, and exits 0 only if both did.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import sys
import threading
import time
from typing import Callable, Dict, NoReturn, Optional, TextIO, cast

from .._api import configure
from .._linux._silence import Outcome, silent_pair, watch
from .._settings import Settings
from ..constants import detect_platform
from ..tcp_info import get_tcp_info
from . import _report as _output

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
        default=None,
        metavar="MS",
        help=f"TCP_KEEPIDLE: silence before the first probe, ms (default {DEFAULT_IDLE})",
    )
    parser.add_argument(
        "--interval",
        type=_non_negative,
        default=None,
        metavar="MS",
        help=f"TCP_KEEPINTVL: time between probes, ms (default {DEFAULT_INTERVAL})",
    )
    parser.add_argument(
        "--probes",
        type=_non_negative,
        default=None,
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
        "--detect-within",
        type=_non_negative,
        default=None,
        metavar="MS",
        dest="detect_within",
        help="use the settings netkeepalive.detect_within(MS) chooses (--probes may fix "
        "the probe count) and also send data that is never acknowledged: both "
        "connections must fail within MS",
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


def _unacknowledged_data(
    host: str, settings: Settings, limit: float, found: Dict[str, object]
) -> None:
    """Send data to a silenced peer with *settings*; put what happened in *found*."""
    try:
        with silent_pair(host) as (client, _server):
            configure(
                client,
                idle=settings.idle,
                interval=settings.interval,
                probes=settings.probes,
                user_timeout=settings.user_timeout,
            )
            start = time.monotonic()
            client.sendall(b"never acknowledged" * 50)
            found["outcome"] = watch(client, start, limit)
    except OSError as exc:  # reported by the caller
        found["error"] = exc


def demo(
    idle: int = DEFAULT_IDLE,
    interval: int = DEFAULT_INTERVAL,
    probes: int = DEFAULT_PROBES,
    user_timeout: Optional[int] = None,
    early: int = DEFAULT_EARLY,
    late: int = DEFAULT_LATE,
    host: str = "127.0.0.1",
    out: TextIO = sys.stdout,
    budget: Optional[int] = None,
) -> int:
    """Run the experiment, printing to *out*; return the exit status (0 = agreed).

    With *budget* (ms), a second connection with the same settings sends
    data that is never acknowledged, and both must fail within *budget*.
    """

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    found: Dict[str, object] = {}
    sender: Optional[threading.Thread] = None
    if budget is not None:
        chosen = Settings(True, idle, interval, probes, user_timeout)
        sender = threading.Thread(
            target=_unacknowledged_data,
            args=(host, chosen, (budget + late + _GRACE) / 1000, found),
            daemon=True,
        )
        sender.start()
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
        if budget is not None:
            say(f"detection budget {budget} ms: netkeepalive.detect_within({budget}) chose them")
            say("(the kernel's timers may run up to 8/63 late: that slack stays in the budget)")
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
        if budget is None or sender is None:
            return 0 if agreed else 1
        within = outcome.timed_out and measured <= budget
        say(
            f"idle connection: dropped after {measured} ms, budget {budget} ms: "
            f"{'OK' if within else 'FAIL'}"
        )
        sender.join()
        return 0 if agreed and within and _say_data(say, budget, settings, found) else 1


def _say_data(
    say: Callable[..., None], budget: int, settings: Settings, found: Dict[str, object]
) -> bool:
    """Report the data-in-flight connection; whether it failed within *budget*."""
    say()
    say("second connection, same settings, sends data the silent server never acknowledges")
    say(f"(TCP_USER_TIMEOUT {settings.user_timeout} ms):")
    error = found.get("error")
    if isinstance(error, OSError):
        say(f"FAIL: {error}")
        return False
    outcome = found.get("outcome")
    if not isinstance(outcome, Outcome) or outcome.failed_at is None or outcome.error is None:
        say(f"FAIL: still connected after {budget} ms")
        return False
    measured = round(outcome.failed_at * 1000)
    name = errno.errorcode.get(outcome.error, str(outcome.error))
    within = outcome.timed_out and measured <= budget
    say(
        f"data in flight: dropped after {measured} ms ({name}), budget {budget} ms: "
        f"{'OK' if within else 'FAIL'}"
    )
    return within


class _Refused(Exception):
    """Keepalive arguments :func:`._options.settings_from_args` refused."""


class _RaisingParser(argparse.ArgumentParser):
    """A parser whose ``error`` raises :class:`_Refused`: the demo reports it as its own errors."""

    def error(self, message: str) -> NoReturn:
        raise _Refused(message)


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
        budget = args.detect_within
        if budget is None:
            idle, interval = args.idle, args.interval
            probes, user_timeout = args.probes, args.user_timeout
            idle = DEFAULT_IDLE if idle is None else idle
            interval = DEFAULT_INTERVAL if interval is None else interval
            probes = DEFAULT_PROBES if probes is None else probes
        else:
            from ._options import settings_from_args

            chosen = settings_from_args(args, _RaisingParser())
            # Linux has all four options (run() refuses every other system).
            idle, interval, probes = chosen["idle"], chosen["interval"], chosen["probes"]
            user_timeout = chosen.get("user_timeout")
        return demo(
            out=cast(TextIO, _output.Report()),  # all that print() needs of a TextIO
            idle=idle,
            interval=interval,
            probes=probes,
            user_timeout=user_timeout,
            early=args.early,
            late=args.late,
            host=args.host,
            budget=budget,
        )
    except _output.OutputFailed as exc:
        return _output.exit_status(name, exc.reason)
    except (ValueError, _Refused) as exc:
        print(f"netkeepalive {name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"netkeepalive {name}: {exc}", file=sys.stderr)
        return 1

"""The keepalive arguments every command takes: ``--idle``, ``--interval``,
``--probes``, ``--user-timeout`` and ``--detect-within``.

Values are in the public units (milliseconds and counts) and are checked
with the library's own converter, so a command refuses exactly what
:func:`netkeepalive.configure` would refuse, with the same message, before
anything is touched.
"""

from __future__ import annotations

import argparse
from typing import Callable, Dict

from .._common import VALUE_KNOBS
from ..constants import INT_MAX

__all__ = ["add_settings_arguments", "integer", "number_from", "settings_from_args"]


def integer(text: str) -> int:
    """An argparse type: a decimal whole number (range checks come later)."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--idle``, ``--interval``, ``--probes``, ``--user-timeout`` and ``--detect-within``."""
    group = parser.add_argument_group("keepalive settings (Linux takes whole seconds)")
    group.add_argument(
        "--idle",
        type=integer,
        metavar="MS",
        help="TCP_KEEPIDLE: idle time before the first probe, ms (whole seconds on Linux)",
    )
    group.add_argument(
        "--interval",
        type=integer,
        metavar="MS",
        help="TCP_KEEPINTVL: time between probes, ms (whole seconds on Linux)",
    )
    group.add_argument(
        "--probes",
        type=integer,
        metavar="N",
        help="TCP_KEEPCNT: unanswered probes before the connection is dropped",
    )
    group.add_argument(
        "--user-timeout",
        type=integer,
        metavar="MS",
        dest="user_timeout",
        help="TCP_USER_TIMEOUT: how long sent data may stay unacknowledged, ms "
        "(0 = system default)",
    )
    group.add_argument(
        "--detect-within",
        type=integer,
        metavar="MS",
        dest="detect_within",
        help="choose --idle, --interval, --probes and --user-timeout so that a silent "
        "peer is noticed within MS milliseconds (--probes may fix the probe count)",
    )


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Dict[str, int]:
    """The knobs given on the command line, checked; ``parser.error`` on a bad one.

    ``--detect-within MS`` stands for the settings
    :func:`netkeepalive.detect_within` chooses (with ``--probes`` as its
    probe count); it cannot be combined with ``--idle``, ``--interval`` or
    ``--user-timeout``.
    """
    from .. import _backends
    from .._convert import to_native
    from ..errors import UnsupportedOptionError

    given: Dict[str, int] = {
        knob: getattr(args, knob) for knob in VALUE_KNOBS if getattr(args, knob, None) is not None
    }
    budget = getattr(args, "detect_within", None)
    try:
        backend = _backends.backend()
        if budget is not None:
            clash = [k for k in ("idle", "interval", "user_timeout") if k in given]
            if clash:
                names = ", ".join("--" + k.replace("_", "-") for k in clash)
                parser.error(f"--detect-within chooses {names} itself: give one or the other")
            from .._budget import detect_within

            plan = detect_within(budget, probes=given.get("probes"))
            chosen = (
                ("idle", plan["idle"]),
                ("interval", plan["interval"]),
                ("probes", plan["probes"]),
                ("user_timeout", plan["user_timeout"]),
            )
            return {knob: value for knob, value in chosen if value is not None}
        for knob, value in given.items():
            label = "--" + knob.replace("_", "-")
            try:
                to_native(backend.option(knob), value, label)
            except UnsupportedOptionError as exc:
                parser.error(f"{label}: {exc}")
    except (TypeError, ValueError, OSError) as exc:
        parser.error(str(exc).replace("detect_within:", "--detect-within:"))
    return given


def number_from(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a decimal int in *minimum*..INT_MAX, else "not *what*".

    Process ids and descriptors reach the kernel as a C ``int``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= INT_MAX:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
        return value

    return parse

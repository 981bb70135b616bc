"""Settings from an outcome: "notice a silent peer within *ms*".

:func:`detect_within` turns a detection budget into the four values
:func:`netkeepalive.configure` takes, for the running platform's units and
ranges (see :mod:`netkeepalive.constants`):

- ``idle + interval * probes`` (the detection time) plus the kernel's timer
  slack fits in *ms* for an idle connection (keepalive): Linux's timer
  wheel (kernel/time/timer.c) runs a timer of length *t* up to ``8/63 * t``
  late (it files the timer in the first level whose granularity is at
  most that, and rounds the expiry up to it), so the plan keeps
  ``detection + detection * 8 / 63 <= ms``, on every platform;
- where the platform has a user timeout, it is chosen so that a peer that
  stops acknowledging sent data is dropped within the same detection time:

  - Linux ``TCP_USER_TIMEOUT`` and Windows ``TCP_MAXRT(MS)``: the detection
    time itself.  Linux drops a probing connection at the first probe at
    which nothing was received for ``user_timeout``, so the user timeout
    neither cuts the keepalive probing short nor stretches it (see
    :attr:`netkeepalive.Settings.detection_time`, tcp(7) and RFC 5482);
  - macOS ``TCP_RXT_CONNDROPTIME`` (and FreeBSD's ``TCP_MAXUNACKTIME``) is
    only checked when a retransmission is due, counting from the first
    retransmission (xnu bsd/netinet/tcp_timer.c, ``TCPT_REXMT``), and the
    retransmissions back off exponentially (at most 64 s apart), so data
    fails up to ``2 * value + 3 RTO`` (or ``value + RTO + 64 s``) after it
    was sent: the plan takes the larger of half the detection time and the
    detection time less 65 s, so data fails within the detection time plus
    a few RTOs, not twice as late.  On macOS it can only shorten
    retransmission, which xnu ends after ``TCP_MAXRXTSHIFT`` (12)
    retransmissions anyway, at most 832 s after the data was sent
    (:data:`~netkeepalive._defaults.XNU_RETRANSMIT_LIMIT`): the plan never
    asks for more, since a longer value changes nothing.  It covers
    ESTABLISHED connections only, and not a peer that stops reading (a
    zero window keeps the persist timer, not the retransmit timer, running).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple, TypedDict

from ._convert import budget_ms, ms_per_unit, range_text, to_native
from .constants import Option, PlatformTable
from .errors import UnsupportedOptionError

if TYPE_CHECKING:
    from ._convert import Milliseconds

__all__ = [
    "DEFAULT_PROBES",
    "KeepaliveParams",
    "detect_within",
    "minimum_budget",
    "plan_for",
]

#: Probes sent when the caller does not choose: enough that one lost probe
#: does not drop a healthy connection, few enough to leave each probe time.
DEFAULT_PROBES = 3


#: Timer slack kept in the budget: Linux's timer wheel runs a timer of length
#: *t* up to ``t * 8 / 63`` late (a level's granularity is 8 ** n jiffies and
#: it holds timers from 63 * 8 ** (n - 1) jiffies on: kernel/time/timer.c).
_SLACK_NUM, _SLACK_DEN = 8, 63

#: Platforms whose user timeout is only checked when a retransmission is due,
#: counted from the first retransmission (xnu ``TCPT_REXMT``; FreeBSD
#: ``tcp_maxunacktime_check``), with the retransmissions at most
#: :data:`_MAX_RTO_MS` apart.
_CHECKED_AT_RETRANSMISSION = ("darwin", "freebsd")
_MAX_RTO_MS = 64_000


def _detection_limit(budget: int) -> int:
    """The longest detection time in ms whose timer slack still fits in *budget*."""
    return budget * _SLACK_DEN // (_SLACK_DEN + _SLACK_NUM)


def _budget_for(detection: int) -> int:
    """The shortest budget in ms that leaves *detection* ms its timer slack."""
    return -(-detection * (_SLACK_DEN + _SLACK_NUM) // _SLACK_DEN)


class KeepaliveParams(TypedDict):
    """Keyword arguments for :func:`netkeepalive.configure` and friends.

    Times in milliseconds; ``None`` where the running platform has no such
    option (the entry points skip it).
    """

    idle: Optional[int]
    interval: Optional[int]
    probes: Optional[int]
    user_timeout: Optional[int]


def _budget_ms(ms: object) -> int:
    """*ms* (``int``, ``float`` or ``timedelta``) as whole milliseconds, > 0."""
    return budget_ms(ms, "detect_within")


def _options(table: PlatformTable) -> Tuple[Option, Option]:
    idle, interval = table.idle, table.interval
    if idle is None or interval is None:
        raise UnsupportedOptionError.for_knob(
            "idle" if idle is None else "interval",
            table.name,
            "detect_within needs a per-socket keepalive idle time and interval; "
            "they are system-wide settings there",
        )
    return idle, interval


def _probe_range(table: PlatformTable, probes: Optional[int]) -> Tuple[int, ...]:
    """The probe counts to try, best first; ``()`` never."""
    opt = table.probes
    if opt is None:
        if probes is not None:
            raise UnsupportedOptionError.for_knob(
                "probes", table.name, "the probe count is fixed by the system there"
            )
        if table.name.startswith("win32"):
            from ._defaults import WINDOWS_KEEPALIVE_PROBES  # fixed before build 15063

            return (WINDOWS_KEEPALIVE_PROBES,)
        raise UnsupportedOptionError.for_knob(
            "probes",
            table.name,
            "detect_within needs TCP_KEEPCNT or a known fixed probe count to keep a budget",
        )
    if probes is not None:
        return (to_native(opt, probes, "probes"),)  # configure's own check
    top = max(opt.minimum, min(DEFAULT_PROBES, opt.maximum))
    return tuple(range(top, max(opt.minimum, 1) - 1, -1))


def _split(budget: int, probes: int, idle: Option, interval: Option) -> Optional[Tuple[int, int]]:
    """(idle, interval) in ms with ``idle + probes * interval <= budget``, or ``None``.

    The interval gets ``budget / (2 * probes)`` (so the
    probing takes half the budget, the idle time the other half), rounded
    down to the interval's unit and at least its minimum; the idle time
    gets what is left, rounded down to its unit, within its range.
    """
    gi, gv = ms_per_unit(idle), ms_per_unit(interval)
    lo_i, lo_v = max(idle.minimum, 1), max(interval.minimum, 1)
    step = max(lo_v, min(interval.maximum, budget // (2 * probes) // gv))
    left = budget - probes * step * gv
    if left < lo_i * gi:
        # The halves do not fit: the shortest interval leaves the idle time most.
        step = lo_v
        left = budget - probes * step * gv
        if left < lo_i * gi:
            return None
    idle_units = min(idle.maximum, left // gi)
    return idle_units * gi, step * gv


def minimum_budget(table: PlatformTable, probes: int) -> int:
    """The shortest budget in ms that *table*'s units and minimums can express.

    The shortest detection time (``idle + interval * probes`` at their
    minimums) plus its timer slack.
    """
    idle, interval = _options(table)
    shortest_idle = max(idle.minimum, 1) * ms_per_unit(idle)
    shortest_interval = max(interval.minimum, 1) * ms_per_unit(interval)
    return _budget_for(shortest_idle + probes * shortest_interval)


def _user_timeout(table: PlatformTable, detection: int) -> Optional[int]:
    """The user timeout that fails unacknowledged data within *detection* ms, in ms.

    ``None`` if the platform has none or no value fits its range.
    """
    opt = table.user_timeout
    if opt is None:
        return None
    grain = ms_per_unit(opt)
    if table.name.startswith(_CHECKED_AT_RETRANSMISSION):
        detection = max(detection // 2, detection - _MAX_RTO_MS - 1000)
    if table.name == "darwin":
        from ._defaults import XNU_RETRANSMIT_LIMIT

        detection = min(detection, XNU_RETRANSMIT_LIMIT)  # no longer value does anything
    units = detection // grain  # never past the budget
    if units < max(opt.minimum, 1) or units > opt.maximum:
        return None
    return units * grain


def plan_for(table: PlatformTable, ms: object, probes: Optional[int] = None) -> KeepaliveParams:
    """:func:`detect_within` for *table* (any platform's, for tests and docs)."""
    budget = _budget_ms(ms)
    idle, interval = _options(table)
    counts = _probe_range(table, probes)
    limit = _detection_limit(budget)
    for count in counts:
        split = _split(limit, count, idle, interval)
        if split is not None:
            idle_ms, interval_ms = split
            detection = idle_ms + count * interval_ms
            return KeepaliveParams(
                idle=idle_ms,
                interval=interval_ms,
                probes=count if table.probes is not None else None,
                user_timeout=_user_timeout(table, detection),
            )
    least = minimum_budget(table, counts[-1])
    with_probes = f" with {counts[-1]} probes" if probes is not None else ""
    raise ValueError(
        f"detect_within: {budget} ms is below what {table.name} can express{with_probes}: "
        f"at least {least} ms ({range_text(idle)}; {range_text(interval)})"
    )


def detect_within(ms: Milliseconds, *, probes: Optional[int] = None) -> KeepaliveParams:
    """Keepalive settings that notice a silent peer within *ms* milliseconds.

    Returns ``{"idle", "interval", "probes", "user_timeout"}`` for the running
    platform, ready for ``configure(sock, **detect_within(30_000))``,
    :func:`~netkeepalive.socket_options`, the integrations and the CLI's
    ``--detect-within``.  An idle connection whose peer goes silent is
    dropped after ``idle + interval * probes``, which with the kernel
    timers' slack (up to 8/63 of it) fits in *ms*; where the platform has
    a user timeout (``TCP_USER_TIMEOUT``, ``TCP_RXT_CONNDROPTIME``,
    ``TCP_MAXRT``...), it is set so that unacknowledged data fails within
    that time too (on Linux: the same time; see :ref:`detection`).  On
    macOS ``TCP_RXT_CONNDROPTIME`` only shortens retransmission, which xnu
    ends after 12 retransmissions (at most 832 s) anyway, for established
    connections with unacknowledged data, not for a zero window: the plan
    never asks for more than 832 s.  Times
    are whole seconds where the kernel takes seconds.  *probes* fixes the
    probe count (default: 3, fewer when the budget is too short for 3).

    :raises ValueError: the budget is below what the platform can express
        (the message names the minimum), or *probes* is out of range.
    :raises TypeError: *ms* is not a duration or *probes* not an int.
    :raises UnsupportedOptionError: the platform has no per-socket idle time
        and interval (OpenBSD), or no probe count while *probes* is given.
    """
    from . import _backends

    return plan_for(_backends.backend().table, ms, probes)

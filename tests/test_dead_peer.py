"""The kernel notices a silent peer when the settings say it will.

Every case runs on a real loopback connection whose server end is silenced
by a socket filter (see ``netkeepalive._linux._silence``), and waits on the
kernel's own keepalive and retransmission timers.  All cases start at once,
each in its own thread, when the first test of this module asks for them,
so the whole module takes about as long as its longest case (~9 s).

Tolerances are the kernel timers' (seconds), never our speed: detection
within -0.2 s / +1.0 s of idle + interval x probes; the user timeout within
-0.2 s / +1.5 s of 2 s; probes spaced interval +/- 0.25 s.  A case that
fails is reported as failed; nothing is retried.
"""

from __future__ import annotations

import errno
import itertools
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional

import pytest

import netkeepalive
from netkeepalive._linux._silence import Outcome, loopback_pair, silent_pair, watch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="silences a peer with a Linux socket filter (SO_ATTACH_FILTER)",
    ),
]

EARLY = 0.2  # s
LATE = 1.0  # s
SPACING = 0.25  # s
USER_TIMEOUT = 2000  # ms
USER_TIMEOUT_LATE = 1.5  # s

MATRIX = [
    (idle, interval, probes)
    for idle, interval, probes in itertools.product((1000, 2000), (1000, 2000), (1, 2, 3))
]
#: The window in which every matrix case must have been detected, s.
WINDOW = max(idle + interval * probes for idle, interval, probes in MATRIX) / 1000 + LATE


@dataclass
class Run:
    """One connection watched until the kernel dropped it or the limit passed."""

    settings: Optional[netkeepalive.Settings]
    predicted: Optional[int]  # ms
    outcome: Outcome
    #: Segments the server end's TCP received while the case ran.
    server_segs_in: int
    #: Segments the client end sent while the case ran.
    client_segs_out: int
    #: TCP_INFO ``unacked`` of the client right after sending data, if any.
    unacked_after_send: Optional[int] = None


def _segs(info: netkeepalive.TcpInfo, name: str) -> int:
    value = getattr(info, name)
    assert value is not None, f"this kernel's TCP_INFO has no {name} (Linux < 4.2)"
    return int(value)


def _keepalive_case(
    idle: int,
    interval: int,
    probes: int,
    *,
    enable: bool = True,
    user_timeout: Optional[int] = None,
    silent: bool = True,
    limit: Optional[float] = None,
) -> Run:
    pair = silent_pair() if silent else loopback_pair()
    with pair as (client, server):
        server_before = _segs(netkeepalive.get_tcp_info(server), "segs_in")
        client_before = _segs(netkeepalive.get_tcp_info(client), "segs_out")
        start = time.monotonic()
        settings = netkeepalive.configure(
            client,
            enable=enable,
            idle=idle,
            interval=interval,
            probes=probes,
            user_timeout=user_timeout,
        )
        predicted = settings.detection_time
        if limit is None:
            assert predicted is not None
            limit = predicted / 1000 + LATE + 1.0
        outcome = watch(client, start, limit)
        return Run(
            settings,
            predicted,
            outcome,
            _segs(netkeepalive.get_tcp_info(server), "segs_in") - server_before,
            _segs(netkeepalive.get_tcp_info(client), "segs_out") - client_before,
        )


def _data_in_flight_case(user_timeout: Optional[int], limit: float) -> Run:
    with silent_pair() as (client, server):
        server_before = _segs(netkeepalive.get_tcp_info(server), "segs_in")
        client_before = _segs(netkeepalive.get_tcp_info(client), "segs_out")
        settings = None
        if user_timeout is not None:
            netkeepalive.set_user_timeout(client, user_timeout)
            settings = netkeepalive.get_settings(client)
        start = time.monotonic()
        client.sendall(b"unanswered" * 100)
        unacked = netkeepalive.get_tcp_info(client).unacked
        outcome = watch(client, start, limit)
        return Run(
            settings,
            user_timeout,
            outcome,
            _segs(netkeepalive.get_tcp_info(server), "segs_in") - server_before,
            _segs(netkeepalive.get_tcp_info(client), "segs_out") - client_before,
            unacked,
        )


CASES: Dict[str, Callable[[], Run]] = {
    **{
        f"idle={i} interval={v} probes={p}": (lambda i=i, v=v, p=p: _keepalive_case(i, v, p))
        for i, v, p in MATRIX
    },
    "keepalive off": lambda: _keepalive_case(1000, 1000, 1, enable=False, limit=WINDOW),
    "answered peer": lambda: _keepalive_case(1000, 1000, 1, silent=False, limit=WINDOW),
    "keepalive with user timeout": lambda: _keepalive_case(1000, 1000, 9, user_timeout=2500),
    "data, user timeout": lambda: _data_in_flight_case(
        USER_TIMEOUT, USER_TIMEOUT / 1000 + USER_TIMEOUT_LATE + 1.0
    ),
    "data, default timeout": lambda: _data_in_flight_case(
        None, USER_TIMEOUT / 1000 + USER_TIMEOUT_LATE + 1.0
    ),
}


@pytest.fixture(scope="module")
def runs() -> Iterator[Dict[str, Future[Run]]]:
    """Every case of this module, started concurrently."""
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        yield {name: pool.submit(case) for name, case in CASES.items()}


def _result(runs: Dict[str, Future[Run]], name: str) -> Run:
    return runs[name].result(timeout=60)


@pytest.mark.parametrize(("idle", "interval", "probes"), MATRIX)
def test_silent_peer_detected_on_time(
    runs: Dict[str, Future[Run]], idle: int, interval: int, probes: int
) -> None:
    run = _result(runs, f"idle={idle} interval={interval} probes={probes}")
    assert run.settings == netkeepalive.Settings(True, idle, interval, probes, 0)
    predicted = (idle + interval * probes) / 1000
    assert run.predicted == idle + interval * probes
    assert run.outcome.error == errno.ETIMEDOUT, run.outcome
    assert run.outcome.failed_at is not None
    assert predicted - EARLY <= run.outcome.failed_at <= predicted + LATE, run.outcome
    assert run.outcome.last is not None
    assert run.outcome.last.state_name == "CLOSE"
    # The filter really kept every probe from the server's TCP.
    assert run.server_segs_in == 0
    assert run.client_segs_out >= probes


@pytest.mark.parametrize(("idle", "interval", "probes"), MATRIX)
def test_probe_counter_rises_at_the_interval(
    runs: Dict[str, Future[Run]], idle: int, interval: int, probes: int
) -> None:
    run = _result(runs, f"idle={idle} interval={interval} probes={probes}")
    seen = run.outcome.probes
    assert [count for _, count in seen] == list(range(1, probes + 1)), seen
    first = seen[0][0]
    assert idle / 1000 - EARLY <= first <= idle / 1000 + LATE, seen
    for (earlier, _), (later, _) in zip(seen, seen[1:]):
        assert abs((later - earlier) - interval / 1000) <= SPACING, seen
    # The drop comes one interval after the last probe.
    assert run.outcome.failed_at is not None
    assert abs(run.outcome.failed_at - seen[-1][0] - interval / 1000) <= SPACING


def test_keepalive_off_never_detects(runs: Dict[str, Future[Run]]) -> None:
    run = _result(runs, "keepalive off")
    assert run.settings is not None
    assert not run.settings.enabled
    assert run.predicted is None
    assert run.outcome.error is None, run.outcome
    assert run.outcome.probes == []
    assert run.outcome.last is not None
    assert run.outcome.last.state_name == "ESTABLISHED"
    assert run.client_segs_out == 0


def test_answering_peer_is_kept(runs: Dict[str, Future[Run]]) -> None:
    # The control: the same probes, answered, never drop the connection.
    run = _result(runs, "answered peer")
    assert run.outcome.error is None, run.outcome
    assert run.outcome.last is not None
    assert run.outcome.last.state_name == "ESTABLISHED"
    # About one probe a second for WINDOW seconds, each answered.
    assert run.client_segs_out >= WINDOW - 2
    assert run.server_segs_in >= WINDOW - 2


def test_user_timeout_replaces_probe_count_when_idle(runs: Dict[str, Future[Run]]) -> None:
    # TCP_KEEPCNT = 9 would take 10 s; with TCP_USER_TIMEOUT = 2500 ms Linux
    # drops the connection at the first keepalive timer after 2.5 s: 3 s.
    run = _result(runs, "keepalive with user timeout")
    assert run.predicted == 3000
    assert run.outcome.error == errno.ETIMEDOUT, run.outcome
    assert run.outcome.failed_at is not None
    assert 3.0 - EARLY <= run.outcome.failed_at <= 3.0 + LATE, run.outcome
    assert [count for _, count in run.outcome.probes] == [1, 2]


def test_user_timeout_with_data_in_flight(runs: Dict[str, Future[Run]]) -> None:
    run = _result(runs, "data, user timeout")
    assert run.settings is not None
    assert run.settings.user_timeout == USER_TIMEOUT
    assert run.unacked_after_send is not None
    assert run.unacked_after_send >= 1
    assert run.outcome.error == errno.ETIMEDOUT, run.outcome
    assert run.outcome.failed_at is not None
    expected = USER_TIMEOUT / 1000
    assert expected - EARLY <= run.outcome.failed_at <= expected + USER_TIMEOUT_LATE, run.outcome
    assert run.outcome.last is not None
    assert run.outcome.last.total_retrans >= 1
    assert run.server_segs_in == 0


def test_without_user_timeout_data_keeps_retrying(runs: Dict[str, Future[Run]]) -> None:
    # The control: the system default (tcp_retries2, ~15 minutes) is far away.
    run = _result(runs, "data, default timeout")
    assert run.outcome.error is None, run.outcome
    assert run.outcome.last is not None
    assert run.outcome.last.state_name == "ESTABLISHED"
    assert run.outcome.last.retransmits >= 1
    assert run.client_segs_out >= 3  # the data and its retransmissions

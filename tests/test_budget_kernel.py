"""detect_within in the kernel: a silent peer is noticed within the budget.

For budgets of 4 s and 8 s, two loopback connections each take the
settings :func:`netkeepalive.detect_within` chose, and their server ends
are silenced by a socket filter (see ``netkeepalive._linux._silence``): one stays
idle (keepalive must drop it), the other sends data that is never
acknowledged (the user timeout must drop it).  All cases start at once,
each in its own thread, when the first test of this module asks for them,
so the module takes about as long as its longest case (~7.5 s).

Tolerances are the kernel timers', never our speed: the idle case must
fail within the budget + 0.3 s and no earlier than 0.2 s before the
detection time read back; the data case within the budget + 0.5 s and no
earlier than 0.2 s before the user timeout.  Nothing is retried.
"""

from __future__ import annotations

import errno
import socket
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Tuple

import pytest

import netkeepalive
from netkeepalive._linux._silence import Outcome, silent_pair, watch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="TCP_INFO and socket filters: Linux"
    ),
]

BUDGETS = (4_000, 8_000)  # ms
EARLY = 0.2  # s
IDLE_LATE = 0.3  # s past the budget
DATA_LATE = 0.5  # s past the budget


@dataclass
class Run:
    """One silenced connection configured with detect_within(budget)."""

    plan: netkeepalive.KeepaliveParams
    settings: netkeepalive.Settings
    outcome: Outcome
    #: Segments the silenced server end's TCP received meanwhile.
    server_segs_in: int
    #: The client's options read with the standard library after configure():
    #: (SO_KEEPALIVE, TCP_KEEPIDLE s, TCP_KEEPINTVL s, TCP_KEEPCNT, TCP_USER_TIMEOUT ms).
    kernel: Tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    #: TCP_INFO ``unacked`` of the client right after sending, if it sent.
    unacked_after_send: Optional[int] = None


def _kernel(sock: socket.socket) -> Tuple[int, int, int, int, int]:
    tcp = socket.IPPROTO_TCP
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
        sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
        sock.getsockopt(tcp, socket.TCP_KEEPCNT),
        sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
    )


def _segs_in(sock: socket.socket) -> int:
    value = netkeepalive.get_tcp_info(sock).segs_in
    assert value is not None, "this kernel's TCP_INFO has no segs_in (Linux < 4.2)"
    return value


def _case(budget: int, send: bool) -> Run:
    plan = netkeepalive.detect_within(budget)
    with silent_pair() as (client, server):
        before = _segs_in(server)
        start = time.monotonic()
        settings = netkeepalive.configure(client, **plan)
        kernel = _kernel(client)
        unacked = None
        if send:
            start = time.monotonic()
            client.sendall(b"never acknowledged" * 50)
            unacked = netkeepalive.get_tcp_info(client).unacked
        outcome = watch(client, start, budget / 1000 + DATA_LATE + 1.0)
        return Run(plan, settings, outcome, _segs_in(server) - before, kernel, unacked)


CASES: Dict[str, Callable[[], Run]] = {
    **{f"idle {b}": (lambda b=b: _case(b, send=False)) for b in BUDGETS},
    **{f"data {b}": (lambda b=b: _case(b, send=True)) for b in BUDGETS},
}


@pytest.fixture(scope="module")
def runs() -> Iterator[Dict[str, Future[Run]]]:
    """Every case of this module, started concurrently."""
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        yield {name: pool.submit(case) for name, case in CASES.items()}


def _result(runs: Dict[str, Future[Run]], name: str) -> Run:
    return runs[name].result(timeout=60)


def _read_back_matches(run: Run) -> None:
    # The kernel holds the plan, read with the standard library and by
    # netkeepalive alike.
    plan, settings = run.plan, run.settings
    assert plan["idle"] is not None
    assert plan["interval"] is not None
    assert run.kernel == (
        1,
        plan["idle"] // 1000,
        plan["interval"] // 1000,
        plan["probes"],
        plan["user_timeout"],
    )
    assert settings == netkeepalive.Settings(
        True, plan["idle"], plan["interval"], plan["probes"], plan["user_timeout"]
    )


@pytest.mark.parametrize("budget", BUDGETS)
def test_silent_idle_peer_detected_within_the_budget(
    runs: Dict[str, Future[Run]], budget: int
) -> None:
    run = _result(runs, f"idle {budget}")
    _read_back_matches(run)
    predicted = run.settings.detection_time
    assert predicted is not None
    assert predicted <= budget
    assert run.outcome.error == errno.ETIMEDOUT, run.outcome
    assert run.outcome.failed_at is not None
    assert predicted / 1000 - EARLY <= run.outcome.failed_at <= budget / 1000 + IDLE_LATE, (
        run.outcome
    )
    # Keepalive did it: its probes went out, one per interval, unanswered.
    assert run.plan["probes"] is not None
    assert [n for _, n in run.outcome.probes] == list(range(1, run.plan["probes"] + 1))
    assert run.server_segs_in == 0


@pytest.mark.parametrize("budget", BUDGETS)
def test_unacknowledged_data_detected_within_the_budget(
    runs: Dict[str, Future[Run]], budget: int
) -> None:
    run = _result(runs, f"data {budget}")
    _read_back_matches(run)
    user_timeout = run.settings.user_timeout
    assert user_timeout is not None
    assert 0 < user_timeout <= budget
    assert run.unacked_after_send is not None
    assert run.unacked_after_send >= 1
    assert run.outcome.error == errno.ETIMEDOUT, run.outcome
    assert run.outcome.failed_at is not None
    assert user_timeout / 1000 - EARLY <= run.outcome.failed_at <= budget / 1000 + DATA_LATE, (
        run.outcome
    )
    # The retransmissions, not keepalive, gave up: data stayed in flight.
    assert run.outcome.last is not None
    assert run.outcome.last.total_retrans >= 1
    assert run.server_segs_in == 0

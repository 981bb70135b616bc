"""What :func:`netkeepalive.install` adds to a connect.

Run from the repository root::

    python benchmarks/bench_install.py
    python benchmarks/bench_install.py --repeat 31 --number 20000 --connections 0

Per-call part: one process, one established loopback TCP connection ``s``
and one connected UDP socket ``u``.  Connecting an already connected socket
again makes the kernel answer at once (``EISCONN`` for TCP; UDP just sets
the same peer), so ``connect_ex`` can be timed many times without opening
connections.  install() leaves a connected socket alone (it reads the
socket's state first), so for the figures of a new socket that check is
made to answer "new" after doing its real work (a little dearer than the
real check: the figures err high); *older socket* is the real path of a
socket that is already connected.  Each round times, back to back:

* ``connect_ex`` of the original method (the kernel call alone);
* ``netkeepalive.configure(s, ...)`` with the installed values (the cost
  every way of configuring a socket pays);
* ``s.connect_ex(...)`` with the policy installed: wrapper, checks,
  the policy's writes (configure()'s, without its read-back) and the
  kernel call;
* the *hand-written* arm: the same options written by hand with the same
  guarantees (:func:`hand_written`: the state check install() makes, one
  ``getsockopt(TCP_INFO)`` forced to "new" as above, the five originals
  read with ``socket.getsockopt`` to put back on a refusal, the six
  ``socket.setsockopt`` writes in configure()'s order), then the kernel
  call; the median of the rounds' *installed / hand-written* is checked
  against 1.10;

and reports the median over rounds of *installed - original - configure*
(negative now that a connect skips configure()'s read-back).  The policy's
writes are eleven system calls, whose time varies far more from round to
round than the wrapper's work, so the same is measured once more with
them replaced by a function that does nothing (*isolated*): that figure
is checked against the 3 µs target.  The same is done for the
UDP socket (left untouched: what every other socket pays) and for a TCP
socket that a ``where`` filter turns down.  Last, what ``enforce=True``
adds to a ``setsockopt`` of an option the policy does not cover
(``TCP_NODELAY``): the wrapper and one dictionary look-up.

End-to-end part (``--connections N``, default 300; 0 skips it): N fresh
loopback connections (``socket.create_connection``, closed at once)
without the policy, with the options written by hand before ``connect``
(the hand-written arm, state check included) and with the policy,
interleaved in rounds of 50, median µs per connection.  Each arm makes
its socket and calls ``connect`` itself (no ``getaddrinfo``).  It opens
3 x N short connections; the figures vary with the machine's load.

Exits 1 when the added cost is 3 µs or more, or a connect under install()
costs more than 1.10 times the hand-written one (``--report-only``: never).
No third-party packages are needed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import socket
import statistics
import sys
import time
import timeit
from typing import Any, Callable, Dict, List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import netkeepalive  # noqa: E402

#: The most install() may add to a connect, on top of configure(), in ns.
ADDED_LIMIT_NS = 3000.0
#: A connect under install() against the same options written by hand.
HAND_LIMIT = 1.10

TCP = socket.IPPROTO_TCP
POLICY: Dict[str, Any] = {"idle": 60_000, "interval": 10_000, "probes": 4, "user_timeout": 90_000}


_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_FIVE = [
    (TCP, getattr(socket, "TCP_USER_TIMEOUT", 18), POLICY["user_timeout"]),
    (TCP, getattr(socket, "TCP_KEEPCNT", 6), POLICY["probes"]),
    (TCP, getattr(socket, "TCP_KEEPINTVL", 5), POLICY["interval"] // 1000),
    (TCP, getattr(socket, "TCP_KEEPIDLE", 4), POLICY["idle"] // 1000),
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
]


def hand_written(sock: socket.socket) -> None:
    """The policy written by hand, with install()'s guarantees (Linux numbers).

    The originals of the five options read first (to put them back if a
    write is refused: all or nothing), then the writes in configure()'s
    order (the idle time again after SO_KEEPALIVE=1), no read-back.  The
    caller makes the state check (one getsockopt(TCP_INFO)) before it.
    """
    get, put = sock.getsockopt, sock.setsockopt
    was = [get(level, opt) for level, opt, _value in _FIVE]
    done = 0
    try:
        for level, opt, value in _FIVE:
            put(level, opt, value)
            done += 1
        put(TCP, _FIVE[3][1], _FIVE[3][2])
    except OSError:
        for (level, opt, _value), old in zip(_FIVE[:done], was):
            put(level, opt, old)
        raise


def _connect(address: Any, by_hand: bool = False) -> socket.socket:
    """A new TCP socket connected to *address*; *by_hand*: the policy written first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if by_hand and sock.getsockopt(TCP, _TCP_INFO, 1) == b"\x07":  # install()'s check
            hand_written(sock)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _time(stmt: Callable[[], object], number: int) -> float:
    """ns per call of *stmt*."""
    return timeit.Timer(stmt).timeit(number) / number * 1e9


def time_per_call(repeat: int, number: int) -> Dict[str, float]:
    """Medians in ns: the parts of a connect with and without the policy."""
    real_connect_ex = socket.socket.connect_ex
    configure = netkeepalive.configure
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = listener.getsockname()
        s = socket.create_connection(address)
        peer, _ = listener.accept()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        u_address = u.getsockname()
        u.connect(u_address)
        try:
            rows: Dict[str, List[float]] = {
                "original connect_ex": [],
                "configure()": [],
                "installed connect_ex": [],
                "hand-written connect_ex": [],
                "installed / hand-written (ratio)": [],
                "added": [],
                "UDP original": [],
                "UDP installed": [],
                "UDP added": [],
                "where() says no: added": [],
                "isolated: added": [],
                "older socket: added": [],
                "setsockopt(TCP_NODELAY) under enforce: added": [],
            }

            def nothing(sock: Any, **kwargs: Any) -> None:
                return None

            api = sys.modules["netkeepalive._api"]
            policy_module = importlib.import_module("netkeepalive._policy")
            real_fresh = policy_module.fresh
            real_through = policy_module.through_socket

            def no_writes(sock: socket.socket, raw: Any) -> bool:
                nothing(sock, **POLICY)
                return True

            def fresh(sock: socket.socket) -> bool:
                real_fresh(sock)  # the system call a new socket pays for
                return True

            def rejected(sock: socket.socket, address: Any) -> bool:
                return False

            def by_hand(sock: socket.socket, where: Any) -> int:
                """The policy written by hand: as install() does (see hand_written)."""
                real_fresh(sock)  # the same state check, forced to "new" as above
                hand_written(sock)
                return int(real_connect_ex(sock, where))

            for round_ in range(-1, repeat):  # round -1 warms up, is not kept
                base = _time(lambda: real_connect_ex(s, address), number)
                conf = _time(lambda: configure(s, **POLICY), number)
                u_base = _time(lambda: real_connect_ex(u, u_address), number)
                nodelay = _time(lambda: s.setsockopt(TCP, socket.TCP_NODELAY, 1), number)
                netkeepalive.install(**POLICY, enforce=True)
                try:
                    nodelay_enforced = _time(
                        lambda: s.setsockopt(TCP, socket.TCP_NODELAY, 1), number
                    )
                finally:
                    netkeepalive.uninstall()
                netkeepalive.install(**POLICY)
                try:
                    older = _time(lambda: s.connect_ex(address), number)
                    policy_module.fresh = fresh
                    inst = _time(lambda: s.connect_ex(address), number)
                    u_inst = _time(lambda: u.connect_ex(u_address), number)
                    netkeepalive.install(**POLICY, where=rejected)
                    skipped = _time(lambda: s.connect_ex(address), number)
                    netkeepalive.install(**POLICY)
                    api.configure = nothing
                    policy_module.through_socket = no_writes
                    stubbed = _time(lambda: s.connect_ex(address), number)
                finally:
                    api.configure = configure
                    policy_module.through_socket = real_through
                    policy_module.fresh = real_fresh
                    netkeepalive.uninstall()
                hand = _time(lambda: by_hand(s, address), number)
                call = _time(lambda: nothing(s, **POLICY), number)
                if round_ < 0:
                    continue
                rows["original connect_ex"].append(base)
                rows["configure()"].append(conf)
                rows["installed connect_ex"].append(inst)
                rows["hand-written connect_ex"].append(hand)
                rows["installed / hand-written (ratio)"].append(inst / hand)
                rows["added"].append(inst - base - conf)
                rows["UDP original"].append(u_base)
                rows["UDP installed"].append(u_inst)
                rows["UDP added"].append(u_inst - u_base)
                rows["where() says no: added"].append(skipped - base)
                rows["isolated: added"].append(stubbed - base - call)
                rows["older socket: added"].append(older - base)
                rows["setsockopt(TCP_NODELAY) under enforce: added"].append(
                    nodelay_enforced - nodelay
                )
            return {name: statistics.median(values) for name, values in rows.items()}
        finally:
            s.close()
            peer.close()
            u.close()


def time_connections(count: int) -> Dict[str, float]:
    """Median µs per fresh loopback connection, without and with the policy."""
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        address = listener.getsockname()

        def batch(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                _connect(address).close()
                listener.accept()[0].close()
            return (time.perf_counter() - start) / n * 1e6

        def by_hand(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                _connect(address, by_hand=True).close()
                listener.accept()[0].close()
            return (time.perf_counter() - start) / n * 1e6

        plain: List[float] = []
        installed: List[float] = []
        hand: List[float] = []
        batch(10)  # warm up
        by_hand(10)
        done = 0
        while done < count:
            n = min(50, count - done)
            plain.append(batch(n))
            hand.append(by_hand(n))
            netkeepalive.install(**POLICY)
            try:
                installed.append(batch(n))
            finally:
                netkeepalive.uninstall()
            done += n
        return {
            "without": statistics.median(plain),
            "options by hand": statistics.median(hand),
            "with install()": statistics.median(installed),
            "install() / by hand (ratio)": statistics.median(
                i / h for i, h in zip(installed, hand)
            ),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--number", type=int, default=5000, help="calls per round (default 5000)")
    parser.add_argument(
        "--connections",
        type=int,
        default=300,
        help="fresh connections each way for the end-to-end figure (default 300; 0 skips)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="exit 0 even when the target is missed"
    )
    args = parser.parse_args(argv)
    if min(args.repeat, args.number) < 1 or args.connections < 0:
        parser.error("--repeat and --number must be at least 1, --connections at least 0")
    print(
        f"netkeepalive {netkeepalive.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"policy: install({', '.join(f'{k}={v!r}' for k, v in POLICY.items())})")
    print(
        f"\nper connect_ex, median of {args.repeat} rounds x {args.number} calls "
        "on an established loopback connection"
    )
    figures = time_per_call(args.repeat, args.number)
    for name, ns in figures.items():
        unit = f"{ns:8.2f} x" if "ratio" in name else f"{ns:8.0f} ns"
        print(f"  {name:44} {unit}")
    added = figures["isolated: added"]
    ok = added < ADDED_LIMIT_NS
    hand_ratio = figures["installed / hand-written (ratio)"]
    hand_ok = hand_ratio <= HAND_LIMIT
    print(
        f"a new socket's connect under install() costs {hand_ratio:.2f}x the same options "
        f"written by hand (target <= {HAND_LIMIT}x): {'PASS' if hand_ok else 'FAIL'}"
    )
    ok = ok and hand_ok
    print(
        f"install() adds {added:.0f} ns (isolated) to a connect on top of configure() "
        f"(target < {ADDED_LIMIT_NS:.0f} ns): {'PASS' if ok else 'FAIL'}"
    )
    if args.connections:
        print(f"\nfresh loopback connections, median us per connection ({args.connections} each)")
        for name, us in time_connections(args.connections).items():
            unit = f"{us:8.2f} x" if "ratio" in name else f"{us:8.1f} us"
            print(f"  {name:28} {unit}")
    return 0 if ok or args.report_only else 1


if __name__ == "__main__":
    raise SystemExit(main())

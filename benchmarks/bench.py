"""netkeepalive against the standard library: per-call cost and import cost.

Run from the repository root::

    python benchmarks/bench.py                  # everything, default sizes
    python benchmarks/bench.py --repeat 15 --number 20000 --import-runs 60
    python benchmarks/bench.py --skip-import    # only the per-call figures

Per-call part: one process, one loopback TCP connection.  Every public
setter and getter, ``configure`` with four options (its read-back included)
and ``get_settings`` is timed with :mod:`timeit` next to the equivalent
``socket.setsockopt``/``socket.getsockopt`` calls on the same socket.  The
two sides are interleaved (library, standard library, alternating which goes
first) for ``--repeat`` rounds of ``--number`` calls each; the figures are
medians in ns per call.

Beside the standard library, each call is compared with the *floor*, the
bare ``ctypes`` call (at most 1.35x for a setter, 1.25x for a getter and
``get_settings``), and an ``int`` descriptor with the socket object (at
most 1.10x).  Printed with no target: the least a Python function can add
to the floor (one frame, ``sock.fileno()``, a look-up; it skips the checks
a correct call makes), the measure of what a target against the floor can
ask on this interpreter and machine.

Import part: ``python -S -c "import netkeepalive"`` against
``python -S -c "import socket, ctypes"``, interleaved, median wall time of
``--import-runs`` runs each (``-S`` keeps the site hooks of the current
environment out of both; ``--with-site`` leaves them in).  Also checks
that the import loads no C library and starts no process, and lists the
heaviest modules the import adds (``python -X importtime``).

Exits 1 when a target is missed:

* each setter and getter: at most 2.5x its standard-library call;
* ``configure`` with four options and its read-back (and ``get_settings``):
  at most 2.5x the same standard-library calls (for ``configure``: the
  reads of the values it is about to change, the writes, the read-back);
* the floor and ``int`` descriptor targets above;
* the import: at most 1.25x, no C library loaded, no process started.

No third-party packages are needed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import time
import timeit
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import netkeepalive  # noqa: E402
import netkeepalive._libc  # noqa: E402

CALL_LIMIT = 2.5
#: Against the floor (the bare ctypes call, see Case.floor).
SET_FLOOR_LIMIT = 1.35
GET_FLOOR_LIMIT = 1.25
#: An int descriptor against the socket object.
FD_LIMIT = 1.10
IMPORT_LIMIT = 1.25

SOL_SOCKET = socket.SOL_SOCKET
SO_KEEPALIVE = socket.SO_KEEPALIVE
IPPROTO_TCP = socket.IPPROTO_TCP
# Linux's numbers where this Python's socket module lacks a name.
TCP_KEEPIDLE = getattr(socket, "TCP_KEEPIDLE", 4)
TCP_KEEPINTVL = getattr(socket, "TCP_KEEPINTVL", 5)
TCP_KEEPCNT = getattr(socket, "TCP_KEEPCNT", 6)
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)


class Case(NamedTuple):
    """One library statement and the statements it is compared with."""

    name: str
    ours: str
    stdlib: str
    #: The floor: the same C calls through ctypes with nothing else, a
    #: ``PyDLL`` function (no ``argtypes``) and ``byref`` arguments built
    #: beforehand (``v`` holds the value, ``pv``/``pl`` value and length).
    floor: str
    #: At most this many times the floor (``None``: not a target).
    floor_limit: Optional[float]


def _set_get(pairs: Sequence[Tuple[int, int, int]]) -> str:
    sets = [f"s.setsockopt({lvl}, {opt}, {val})" for lvl, opt, val in pairs]
    gets = [f"s.getsockopt({lvl}, {opt})" for lvl, opt, _ in pairs]
    return "; ".join(sets + gets)


def _c_set(level: int, opt: int) -> str:
    return f"c_set(fd, {level}, {opt}, pv, 4)"


def _c_get(level: int, opt: int) -> str:
    return f"c_get(fd, {level}, {opt}, pv, pl)"


def cases() -> List[Case]:
    """Every measured case; values are valid everywhere Linux-like."""
    tcp = IPPROTO_TCP
    five = [
        (tcp, TCP_USER_TIMEOUT, 3000),
        (tcp, TCP_KEEPCNT, 4),
        (tcp, TCP_KEEPINTVL, 1),
        (tcp, TCP_KEEPIDLE, 2),
        (SOL_SOCKET, SO_KEEPALIVE, 1),
    ]
    out: List[Case] = []
    # (function suffix, public value, level, option, native value)
    for suffix, value, level, opt, native in [
        ("keepalive", "True", SOL_SOCKET, SO_KEEPALIVE, 1),
        ("keepalive_idle", "2000", tcp, TCP_KEEPIDLE, 2),
        ("keepalive_interval", "1000", tcp, TCP_KEEPINTVL, 1),
        ("keepalive_probes", "4", tcp, TCP_KEEPCNT, 4),
        ("user_timeout", "3000", tcp, TCP_USER_TIMEOUT, 3000),
    ]:
        out.append(
            Case(
                f"set_{suffix}",
                f"nk.set_{suffix}(s, {value})",
                f"s.setsockopt({level}, {opt}, {native})",
                _c_set(level, opt),
                SET_FLOOR_LIMIT,
            )
        )
        out.append(
            Case(
                f"get_{suffix}",
                f"nk.get_{suffix}(s)",
                f"s.getsockopt({level}, {opt})",
                _c_get(level, opt),
                GET_FLOOR_LIMIT,
            )
        )
    # The same calls by hand: the values about to change read first (all or
    # nothing: they are written back if a write is refused), the idle time
    # again after SO_KEEPALIVE=1 (docs/knobs.rst), then the read-back.
    writes = [(lvl, opt) for lvl, opt, _ in five] + [(tcp, TCP_KEEPIDLE)]
    out.append(
        Case(
            "configure (4 options + read-back)",
            "nk.configure(s, idle=2000, interval=1000, probes=4, user_timeout=3000)",
            "; ".join(f"s.getsockopt({lvl}, {opt})" for lvl, opt, _ in five)
            + "; "
            + _set_get(five).replace(
                f"s.setsockopt({SOL_SOCKET}, {SO_KEEPALIVE}, 1)",
                f"s.setsockopt({SOL_SOCKET}, {SO_KEEPALIVE}, 1); "
                f"s.setsockopt({tcp}, {TCP_KEEPIDLE}, 2)",
            ),
            "; ".join(
                [_c_get(lvl, opt) for lvl, opt, _ in five]
                + [_c_set(lvl, opt) for lvl, opt in writes]
                + [_c_get(lvl, opt) for lvl, opt, _ in five]
            ),
            None,
        )
    )
    gets = "; ".join(f"s.getsockopt({lvl}, {opt})" for lvl, opt, _ in five)
    floor = "; ".join(_c_get(lvl, opt) for lvl, opt, _ in five)
    out.append(Case("get_settings", "nk.get_settings(s)", gets, floor, GET_FLOOR_LIMIT))
    return out


#: The least a Python function can add to the floor: not a target, the
#: measure of what any target against the floor can ask.  Each does less than
#: a correct call (no type or range test, no fallback on a refusal, no
#: per-thread buffer): one frame, ``sock.fileno()``, and for the setter one
#: look-up of the ready-packed value; then the floor's own call.
BOUND_CASES = [
    (
        "setter: frame + fileno + look-up",
        "bound_set(s, 1000)",
        _c_set(IPPROTO_TCP, TCP_KEEPINTVL),
    ),
    (
        "getter: frame + fileno + read",
        "bound_get(s)",
        _c_get(IPPROTO_TCP, TCP_KEEPINTVL),
    ),
]

#: An int descriptor against the same call with the socket object.
FD_CASES = [
    ("set_keepalive_interval", "nk.set_keepalive_interval({}, 1000)"),
    ("get_keepalive_interval", "nk.get_keepalive_interval({})"),
    ("set_user_timeout", "nk.set_user_timeout({}, 3000)"),
    ("get_settings", "nk.get_settings({})"),
]


class Result(NamedTuple):
    """Medians of one case: ns per call, and the ratio of each round's pair."""

    name: str
    ours_ns: float
    stdlib_ns: float
    #: Median over rounds of (ours / stdlib) in that round: the sides of a
    #: round run back to back, so a slow moment of the machine hits both.
    ratio: float
    floor_ns: float
    floor_ratio: float
    floor_limit: Optional[float]


def _interleaved(
    timers: Sequence[Sequence[timeit.Timer]], repeat: int, number: int
) -> List[List[List[float]]]:
    """Seconds per call: [case][statement][round], statements rotating within a round."""
    times = [[[] for _ in group] for group in timers]  # type: List[List[List[float]]]
    for round_ in range(-1, repeat):  # round -1 warms up, is not kept
        for i, group in enumerate(timers):
            order = list(range(len(group)))
            shift = round_ % len(order)
            for j in order[shift:] + order[:shift]:
                t = group[j].timeit(number) / number
                if round_ >= 0:
                    times[i][j].append(t)
    return times


def _ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def _namespace(client: socket.socket) -> Dict[str, object]:
    """What the statements use: the library, the socket, the floor's C functions."""
    lib = ctypes.CDLL(netkeepalive._libc.libc()._name)
    held = ctypes.PyDLL(lib._name, handle=lib._handle)
    pair = (ctypes.c_int * 2)(1, 4)
    c_set, c_get = held.setsockopt, held.getsockopt
    pv, pl = ctypes.byref(pair), ctypes.byref(pair, 4)
    packed = {1000: struct.pack("=i", 1)}
    tcp, number = IPPROTO_TCP, TCP_KEEPINTVL

    def bound_set(sock: socket.socket, value: int) -> int:
        return int(c_set(sock.fileno(), tcp, number, packed[value], 4))

    def bound_get(sock: socket.socket) -> int:
        c_get(sock.fileno(), tcp, number, pv, pl)
        return int(pair[0])

    return {
        "nk": netkeepalive,
        "s": client,
        "fd": client.fileno(),
        "c_set": c_set,
        "c_get": c_get,
        "pv": pv,
        "pl": pl,
        "bound_set": bound_set,
        "bound_get": bound_get,
    }


Timings = Tuple[List[Result], List[Tuple[str, float, float]], List[Tuple[str, float, float]]]


def time_calls(repeat: int, number: int) -> Timings:
    """Interleaved timings of every case on one loopback connection.

    Also ``(name, ns with an int descriptor, ratio to the socket object)``
    for :data:`FD_CASES`, and ``(name, ns, ratio to the floor)`` for
    :data:`BOUND_CASES`.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        try:
            netkeepalive.get_settings(client)  # loads the C library, builds the fast path
            namespace = _namespace(client)
            all_cases = cases()
            statements = [[c.ours, c.stdlib, c.floor] for c in all_cases]
            statements += [[stmt.format("fd"), stmt.format("s")] for _n, stmt in FD_CASES]
            statements += [[bound, floor] for _n, bound, floor in BOUND_CASES]
            for group in statements:  # warm up: every value of every setter once
                for stmt in group:
                    exec(stmt, dict(namespace))
            timers = [[timeit.Timer(st, globals=namespace) for st in g] for g in statements]
            times = _interleaved(timers, repeat, number)
            results = [
                Result(
                    case.name,
                    statistics.median(t[0]) * 1e9,
                    statistics.median(t[1]) * 1e9,
                    _ratio(t[0], t[1]),
                    statistics.median(t[2]) * 1e9,
                    _ratio(t[0], t[2]),
                    case.floor_limit,
                )
                for case, t in zip(all_cases, times)
            ]
            fds = [
                (name, statistics.median(t[0]) * 1e9, _ratio(t[0], t[1]))
                for (name, _stmt), t in zip(FD_CASES, times[len(all_cases) :])
            ]
            bounds = [
                (name, statistics.median(t[0]) * 1e9, _ratio(t[0], t[1]))
                for (name, _b, _f), t in zip(BOUND_CASES, times[len(all_cases) + len(FD_CASES) :])
            ]
            return results, fds, bounds
        finally:
            client.close()
            server.close()


# -- import cost -----------------------------------------------------------

# ctypes and socket come first: importing ctypes opens the interpreter's own
# symbols (an audit event of its own), which is not netkeepalive's doing.
_IMPORT_CHECK = r"""
import ctypes, json, socket, sys
events = []
WATCH = ("ctypes.dlopen", "subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec",
         "os.system", "os.spawn")
def hook(event, args):
    if event.startswith(WATCH):
        events.append(f"{event}{args!r}")
sys.addaudithook(hook)
before = set(sys.modules)
import netkeepalive
added = sorted(set(sys.modules) - before)
import netkeepalive._libc
print(json.dumps({
    "events": events,
    "libc_loaded": netkeepalive._libc._lib is not None,
    "added": added,
}))
"""


def _child_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = ROOT
    return env


#: Interpreter options of every child: ``-S`` unless --with-site.
CHILD_FLAGS: List[str] = ["-S"]


def _run(code: str, env: Dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *CHILD_FLAGS, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def time_import(runs: int) -> Tuple[float, float]:
    """Median wall time (ms) of the two commands, interleaved."""
    env = _child_env()
    ours: List[float] = []
    std: List[float] = []
    for code in ("import netkeepalive", "import socket, ctypes"):  # warm caches, .pyc
        _run(code, env)
    for i in range(runs):
        order: List[Tuple[str, List[float]]] = [
            ("import netkeepalive", ours),
            ("import socket, ctypes", std),
        ]
        if i % 2:
            order.reverse()
        for code, into in order:
            into.append(_run(code, env))
    return statistics.median(ours) * 1e3, statistics.median(std) * 1e3


def import_side_effects() -> Dict[str, object]:
    """What ``import netkeepalive`` does besides defining things."""
    out = subprocess.run(
        [sys.executable, *CHILD_FLAGS, "-c", _IMPORT_CHECK],
        env=_child_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: Dict[str, object] = json.loads(out)
    return result


def heaviest_imports(limit: int = 8) -> List[Tuple[int, str]]:
    """Modules ``import netkeepalive`` adds to ``import socket, ctypes``, by cumulative µs."""

    def importtime(code: str) -> Dict[str, int]:
        err = subprocess.run(
            [sys.executable, *CHILD_FLAGS, "-X", "importtime", "-c", code],
            env=_child_env(),
            check=True,
            capture_output=True,
            text=True,
        ).stderr
        found: Dict[str, int] = {}
        for line in err.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                found[parts[2].strip()] = int(parts[1])
        return found

    base = importtime("import socket, ctypes")
    ours = importtime("import socket, ctypes; import netkeepalive")
    added = [(us, name) for name, us in ours.items() if name not in base]
    return sorted(added, reverse=True)[:limit]


# -- report ----------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=25, help="rounds per case (default 25)")
    parser.add_argument("--number", type=int, default=5000, help="calls per round (default 5000)")
    parser.add_argument(
        "--import-runs", type=int, default=40, help="interpreter starts per command (default 40)"
    )
    parser.add_argument("--skip-import", action="store_true", help="only the per-call figures")
    parser.add_argument("--skip-calls", action="store_true", help="only the import figures")
    parser.add_argument(
        "--with-site",
        action="store_true",
        help="start the import children without -S (with this environment's site hooks)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 even when a target is missed (a short run on a busy machine, "
        "e.g. CI, checks that the benchmark works, not the figures)",
    )
    args = parser.parse_args(argv)
    if min(args.repeat, args.number, args.import_runs) < 1:
        parser.error("--repeat, --number and --import-runs must be at least 1")
    if args.with_site:
        CHILD_FLAGS.clear()

    print(
        f"netkeepalive {netkeepalive.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"measuring the package in {os.path.dirname(netkeepalive.__file__)}")
    failed = False
    if not args.skip_calls:
        print(
            f"\nper call, median of {args.repeat} interleaved rounds x {args.number} calls,"
            " one loopback socket"
        )
        print(
            f"{'':36} {'netkeepalive':>13} {'stdlib':>9} {'ratio':>7}  target"
            f"      {'floor':>9} {'ratio':>7}  target"
        )
        results, fds, bounds = time_calls(args.repeat, args.number)
        for r in results:
            ok = r.ratio <= CALL_LIMIT
            line = (
                f"{r.name:36} {r.ours_ns:10.0f} ns {r.stdlib_ns:6.0f} ns {r.ratio:6.2f}x"
                f"  <= {CALL_LIMIT}x {_verdict(ok)}  {r.floor_ns:6.0f} ns {r.floor_ratio:6.2f}x"
            )
            if r.floor_limit is not None:
                floor_ok = r.floor_ratio <= r.floor_limit
                ok = ok and floor_ok
                line += f"  <= {r.floor_limit}x {_verdict(floor_ok)}"
            failed |= not ok
            print(line)
        print("\nan int descriptor against the socket object (same call, same round)")
        for name, ns, ratio in fds:
            ok = ratio <= FD_LIMIT
            failed |= not ok
            print(f"{name + '(fd)':36} {ns:10.0f} ns {ratio:16.2f}x  <= {FD_LIMIT}x {_verdict(ok)}")
        print(
            "\nthe least a Python function adds to the floor (no target: each does less"
            " than a correct call)"
        )
        for name, ns, ratio in bounds:
            print(f"{name:36} {ns:10.0f} ns {ratio:16.2f}x the floor")
    if not args.skip_import:
        ours_ms, std_ms = time_import(args.import_runs)
        ratio = ours_ms / std_ms
        ok = ratio <= IMPORT_LIMIT
        failed |= not ok
        print(
            f"\nwhole process, median of {args.import_runs} interleaved runs each"
            f" ({'python -S' if CHILD_FLAGS else 'with site hooks'})"
        )
        for label, ms in (("import netkeepalive", ours_ms), ("import socket, ctypes", std_ms)):
            print(f"{' '.join(['python', *CHILD_FLAGS, '-c', repr(label)]):36} {ms:10.1f} ms")
        print(f"{'ratio':36} {ratio:10.2f}x  <= {IMPORT_LIMIT}x {_verdict(ok)}")
        effects = import_side_effects()
        events = effects["events"]
        clean = not events and not effects["libc_loaded"]
        added = effects["added"]
        assert isinstance(added, list)
        for name in ("subprocess", "ctypes.util"):
            if name in added:
                clean = False
        failed |= not clean
        print(
            f"import side effects: audit events {events or 'none'}, C library loaded: "
            f"{effects['libc_loaded']}, subprocess imported: {'subprocess' in added}, "
            f"ctypes.util imported: {'ctypes.util' in added}  {_verdict(clean)}"
        )
        print("modules the import adds (cumulative us, python -X importtime):")
        for us, name in heaviest_imports():
            print(f"  {us:8d}  {name}")
    print("\nFAIL: a target was missed" if failed else "\nall targets met")
    return 1 if failed and not args.report_only else 0


if __name__ == "__main__":
    raise SystemExit(main())

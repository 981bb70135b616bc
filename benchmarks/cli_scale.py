"""``netkeepalive show``/``set`` against processes with many connections (Linux).

Run from the repository root (as root for a private network namespace and
for more descriptors than the default limit)::

    python benchmarks/cli_scale.py                      # N = 100, 1000, 10000
    python benchmarks/cli_scale.py --sizes 100,1000 --repeat 5
    python benchmarks/cli_scale.py --tree before=OLD_CHECKOUT --tree after=.

For each N, a target process opens N loopback connections to a listener
held by a second helper process, which keeps the server ends: the target
holds exactly N TCP sockets.  The script then times, as whole commands
(wall clock, median of ``--repeat`` runs, output to ``/dev/null``):

* ``netkeepalive show PID``, ``show PID --json``,
  ``set PID --idle 60000 --interval 10000 --probes 6`` on the target;
* ``netkeepalive show`` with no PID (every process of the machine: the
  2N + 1 sockets of the two helpers, and any others);
* the baseline, ``ss -tino dport = :PORT``: the same N sockets, and
  ``ss -tino``: every TCP socket of the namespace (2N + 1 here), and
  ``ss -tinop``, which also maps each socket to its processes (as
  ``show PID`` must): ``show PID`` is reported as a ratio to it;
* ``python -m netkeepalive --version``: the interpreter's start alone.

With several ``--tree`` options, each command runs from each source tree
in turn, round after round (the order rotating), on the same helpers, so
that the versions are compared under the same load.

At the largest N it also times ``show`` with no PID without and with
``--idle-processes`` more processes holding one listening socket each, in
the same network namespace, alternating: the time should hardly change.

As root, the run moves into a network namespace of its own (``unshare
--net``) so that ``ss`` lists only the helpers' sockets; ``--no-netns``
stays in the current one.  An N whose N + 64 descriptors per process the
hard limit does not allow is skipped with a note.  It is not part of the test suite: the
tests check behaviour, never time.  Exits 1 when a command fails, unless
``--report-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SET_ARGS = ["--idle", "60000", "--interval", "10000", "--probes", "6"]
#: show PID against ``ss -tinop`` at N = 10000 (reported, not an exit status).
SS_P_LIMIT = 2.5


# -- the helpers: N connections ---------------------------------------------


def _allow_descriptors(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, max(hard, count)))


def acceptor(count: int) -> int:
    """Listen on 127.0.0.1, accept *count* connections and hold them until stdin closes."""
    _allow_descriptors(count + 64)
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(listener.getsockname()[1], flush=True)
    held = [listener.accept()[0] for _ in range(count)]
    print("ready", flush=True)
    sys.stdin.read()
    for s in [listener, *held]:
        s.close()
    return 0


def connector(count: int, port: int) -> int:
    """Open *count* connections to 127.0.0.1:*port* and hold them until stdin closes."""
    _allow_descriptors(count + 64)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()
    return 0


def fd_limit_allows(count: int) -> bool:
    """Whether a process may open *count* + 64 descriptors here."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return count + 64 <= hard


class Helper:
    """The target (N client ends, nothing else) and the process holding the server ends."""

    def __init__(self, count: int) -> None:
        script = os.path.abspath(__file__)
        self.server = self._start([script, "--acceptor", str(count)])
        self.port = int(self._line(self.server))
        self.target = self._start([script, "--connector", str(count), str(self.port)])
        self._line(self.target)
        self._line(self.server)
        self.pid = self.target.pid

    @staticmethod
    def _start(args: List[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    @staticmethod
    def _line(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"helper exited with status {proc.wait()}")
        return line.strip()

    def close(self) -> None:
        for proc in (self.target, self.server):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=120)


# -- timing -----------------------------------------------------------------


def timed(
    commands: Dict[str, List[str]], envs: Dict[str, Dict[str, str]], repeat: int
) -> Dict[str, Tuple[float, int, str]]:
    """Median wall seconds of each command, its last exit status and stderr's last line.

    The commands (one per source tree) take turns, in an order that rotates
    every round, so that a busy moment of the machine is shared out.
    """
    labels = list(commands)
    times: Dict[str, List[float]] = {label: [] for label in labels}
    last: Dict[str, Tuple[int, str]] = {}
    for round_ in range(repeat):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.perf_counter()
            done = subprocess.run(
                commands[label],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=envs[label],
                cwd="/",
                check=False,
            )
            times[label].append(time.perf_counter() - start)
            lines = done.stderr.strip().splitlines()
            last[label] = (done.returncode, lines[-1] if lines else "")
    return {label: (statistics.median(times[label]), *last[label]) for label in labels}


def idle_processes(count: int) -> List[subprocess.Popen[bytes]]:
    """*count* ``sleep`` processes, each holding one listening TCP socket."""
    started: List[subprocess.Popen[bytes]] = []
    for _ in range(count):
        with socket.create_server(("127.0.0.1", 0)) as s:
            started.append(subprocess.Popen(["sleep", "3600"], pass_fds=[s.fileno()]))
    return started


# -- main -------------------------------------------------------------------


def flat(
    args: argparse.Namespace,
    n: int,
    sources: Dict[str, str],
    envs: Dict[str, Dict[str, str]],
    cli: List[str],
    rows: List[Dict[str, object]],
) -> None:
    """``show`` with no PID without and with ``--idle-processes`` more processes.

    The two cases alternate, round after round (the idle processes are
    started and stopped each round), so both see the same load.
    """
    extra = args.idle_processes
    plain: Dict[str, List[float]] = {label: [] for label in sources}
    more: Dict[str, List[float]] = {label: [] for label in sources}
    commands = {label: [*cli, "show"] for label in sources}
    for _ in range(args.repeat):
        for label, (seconds, _, _) in timed(commands, envs, 1).items():
            plain[label].append(seconds)
        sleepers = idle_processes(extra)
        time.sleep(0.2)  # let them finish starting
        try:
            for label, (seconds, _, _) in timed(commands, envs, 1).items():
                more[label].append(seconds)
        finally:
            for p in sleepers:
                p.kill()
                p.wait()
    for label in sources:
        without, with_ = statistics.median(plain[label]), statistics.median(more[label])
        ratios = statistics.median(m / p for m, p in zip(more[label], plain[label]))
        name = f"show (no PID), {extra} more processes"
        rows.append({"n": n, "tree": label, "command": name, "seconds": with_, "base": without})
        print(
            f"N={n:<6} {label:<8} show (no PID): {without:.3f} s; with {extra} more "
            f"processes: {with_:.3f} s; x{ratios:.2f} (median of the rounds' ratios)"
        )


def trees(specs: Sequence[str]) -> Dict[str, str]:
    """``LABEL=PATH`` or ``PATH`` (labelled by its last component) -> {label: path}."""
    found: Dict[str, str] = {}
    for spec in specs or [ROOT]:
        label, _, path = spec.rpartition("=")
        path = os.path.abspath(path)
        found[label or os.path.basename(path.rstrip("/")) or path] = path
    return found


def run(args: argparse.Namespace) -> int:
    sources = trees(args.tree)
    envs = {label: dict(os.environ, PYTHONPATH=path) for label, path in sources.items()}
    cli = [sys.executable, "-m", "netkeepalive"]
    ss = shutil.which("ss")
    sizes = [int(n) for n in args.sizes.split(",")]
    allowed = [n for n in sizes if fd_limit_allows(n)]
    for n in sizes:
        if n not in allowed:
            print(f"N={n}: skipped, the descriptor limit does not allow {n + 64}")
    processes = len([name for name in os.listdir("/proc") if name.isdigit()])
    print(
        f"Python {platform.python_version()}; Linux {platform.release()} "
        f"{platform.machine()}; {os.cpu_count()} CPUs; {processes} processes; "
        f"repeat {args.repeat}; network namespace: "
        f"{'private' if args.in_netns else 'shared'}"
    )
    for label, path in sources.items():
        print(f"tree {label}: {path}")
    failures: List[str] = []
    rows: List[Dict[str, object]] = []

    def measure(
        name: str, argv: List[str], n: int, sockets: int, ok: Tuple[int, ...], ours: bool = True
    ) -> Dict[str, float]:
        """Time *argv* (after ``python -m netkeepalive`` in each tree when *ours*)."""
        commands = {label: [*cli, *argv] for label in sources} if ours else {"-": argv}
        env = envs if ours else {"-": dict(os.environ)}
        seconds: Dict[str, float] = {}
        for label, (median, status, last) in timed(commands, env, args.repeat).items():
            if status not in ok:
                failures.append(f"N={n} {label} {name}: exit {status}: {last}")
            rows.append(
                {"n": n, "sockets": sockets, "tree": label, "command": name, "seconds": median}
            )
            per = f"{median / sockets * 1e6:8.1f} us/socket" if sockets else " " * 17
            print(f"N={n:<6} {label:<8} {name:<36} {median:8.3f} s {per} (exit {status})")
            seconds[label] = median
        sys.stdout.flush()
        return seconds

    start_s = measure("--version (start only)", ["--version"], 0, 0, (0,))
    for n in allowed:
        h = Helper(n)
        try:
            pid = str(h.pid)
            show = measure("show PID", ["show", pid], n, n, (0,))
            measure("show PID --json", ["show", pid, "--json"], n, n, (0,))
            measure("set PID " + " ".join(SET_ARGS), ["set", pid, *SET_ARGS], n, n, (0,))
            # Other processes may refuse inspection or exit meanwhile: 0 or 1.
            # Every process: the target's and the other helper's sockets (and
            # whatever else the machine runs, from its own namespaces).
            measure("show (no PID)", ["show"], n, 2 * n + 1, (0, 1))
            if ss is not None:
                mine = [ss, "-tino", "dport", "=", f":{h.port}"]
                base = measure("ss -tino dport = :PORT", mine, n, n, (0,), ours=False)["-"]
                measure("ss -tino (2N + 1 sockets)", [ss, "-tino"], n, 2 * n + 1, (0,), False)
                # -p maps every socket to its processes, as show PID does
                # (by reading every process's descriptors).
                procs = measure(
                    "ss -tinop (2N + 1 sockets)", [ss, "-tinop"], n, 2 * n + 1, (0,), False
                )
                for label in sources:
                    ratio = show[label] / procs["-"]
                    verdict = "PASS" if ratio <= SS_P_LIMIT else "FAIL"
                    print(
                        f"N={n:<6} {label:<8} show PID / ss: {show[label] / base:.1f}x; "
                        f"less the interpreter's start: "
                        f"{(show[label] - start_s[label]) / base:.1f}x; "
                        f"show PID / ss -tinop: {ratio:.2f}x"
                        + (
                            f" (target at N=10000: <= {SS_P_LIMIT}x) {verdict}"
                            if n == 10000
                            else ""
                        )
                    )
            else:
                print(f"N={n:<6} ss: not installed (package iproute2), no baseline")
            if n == allowed[-1] and args.idle_processes:
                flat(args, n, sources, envs, cli, rows)
        finally:
            h.close()
    if args.json:
        print(json.dumps(rows))
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures and not args.report_only else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="connection counts N")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (median)")
    parser.add_argument(
        "--idle-processes",
        type=int,
        default=60,
        help="processes with one socket each added at the largest N (default 60; 0: none)",
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="source tree of a netkeepalive to time (repeatable: timed side by side; "
        "default: this checkout)",
    )
    parser.add_argument("--no-netns", action="store_true", help="stay in this network namespace")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--report-only", action="store_true", help="exit 0 even when a command fails"
    )
    parser.add_argument("--acceptor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connector", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.acceptor is not None:
        return acceptor(args.acceptor)
    if args.connector is not None:
        return connector(*args.connector)
    if not sys.platform.startswith("linux"):
        print("netkeepalive show/set run on Linux only")
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if (
        not args.in_netns
        and not args.no_netns
        and os.geteuid() == 0
        and shutil.which("unshare")
        and shutil.which("ip")
    ):
        script = os.path.abspath(__file__)
        inner = [sys.executable, script, *(argv if argv is not None else sys.argv[1:])]
        setup = 'ip link set lo up && exec "$@"'
        return subprocess.call(["unshare", "--net", "sh", "-c", setup, "sh", *inner, "--in-netns"])
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

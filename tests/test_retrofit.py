"""``netkeepalive show`` / ``set`` against a real child process (Linux).

The child (tests/retrofit_child.py) holds TCP connections, an unconnected
TCP socket, a UDP socket and a pipe, and reads its own settings back on
request, so every change the command makes is checked from the target's
side.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import pytest

from netkeepalive._linux import _pidfd

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).parent / "helpers" / "retrofit_child.py"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="pidfd_getfd is Linux-only"
)


def _has_pidfd_getfd() -> bool:
    try:
        _pidfd.check_supported()
    except OSError:
        return False
    return True


needs_pidfd = pytest.mark.skipif(
    sys.platform.startswith("linux") and not _has_pidfd_getfd(),
    reason="this kernel has no pidfd_getfd (Linux 5.6+)",
)
needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: switches user ids with setpriv / creates a network namespace",
)


def cli_command(python: str = sys.executable) -> List[str]:
    """How to start ``python -m netkeepalive`` in a subprocess."""
    return [python, "-m", "netkeepalive"]


def _env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def run_cli(
    *args: object, prefix: Sequence[str] = (), python: str = sys.executable, stdout: Any = None
) -> subprocess.CompletedProcess[str]:
    """The command's result, its output captured (or written to *stdout*, if given)."""
    return subprocess.run(
        [*prefix, *cli_command(python), *(str(a) for a in args)],
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd="/",
        timeout=60,
        check=False,
    )


class Child:
    """The target process, started with *prefix* (e.g. setpriv, unshare)."""

    def __init__(
        self, prefix: Sequence[str] = (), args: Sequence[str] = (), python: str = sys.executable
    ) -> None:
        self.proc = subprocess.Popen(
            [*prefix, python, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd="/",
        )
        line = self._line()
        info = json.loads(line)
        self.pid: int = info["pid"]
        self.tcp: Dict[int, Dict[str, str]] = {int(fd): v for fd, v in info["tcp"].items()}
        self.udp: int = info["udp"]
        self.pipe: List[int] = info["pipe"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited with status {self.proc.wait(timeout=10)}")
        return line

    def command(self, text: str) -> Dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        result: Dict[str, Any] = json.loads(self._line())
        return result

    def read(self) -> Dict[str, Any]:
        """Every socket's state as the child itself reads it."""
        return self.command("read")

    def settings(self) -> Dict[int, Dict[str, Any]]:
        return {int(fd): v for fd, v in self.read()["tcp"].items()}

    def close(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def open_fds() -> Dict[int, str]:
    """This process's descriptors and what each refers to."""
    fds: Dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the directory listing's own descriptor
            continue
    return fds


def settings_only(values: Dict[str, Any]) -> Dict[str, Any]:
    """A reading without the live probe counter."""
    return {k: v for k, v in values.items() if k != "unanswered_probes"}


def untouched(before: Dict[str, Any], after: Dict[str, Any]) -> None:
    """The UDP socket and the pipe are the same objects, unchanged and working."""
    assert after["udp"] == before["udp"]
    assert after["udp"]["so_keepalive"] == 0
    assert after["pipe"] == before["pipe"]
    assert after["pipe"]["roundtrip"] is True


# -- show ------------------------------------------------------------------


@needs_pidfd
def test_show_json_lists_exactly_the_tcp_sockets(child: Child) -> None:
    expected = child.settings()
    result = run_cli("show", child.pid, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["errors"] == []
    sockets = {s["fd"]: s for s in document["sockets"]}
    assert set(sockets) == set(child.tcp)
    assert child.udp not in sockets
    assert not set(child.pipe) & set(sockets)
    for fd, sock in sockets.items():
        assert sock["pid"] == child.pid
        assert sock["error"] is None
        assert sock["keepalive"] == expected[fd]
        assert (sock["local"], sock["remote"]) == (child.tcp[fd]["local"], child.tcp[fd]["remote"])
    states = sorted(s["state"] for s in sockets.values())
    assert states.count("LISTEN") == 1
    assert states.count("CLOSE") == 1  # the unconnected socket
    assert states.count("ESTABLISHED") == len(sockets) - 2
    # The child's distinct values made it through, not the system defaults.
    assert {s["keepalive"]["probes"] for s in sockets.values() if s["state"] == "ESTABLISHED"} == {
        2 + i for i in range(1, len(sockets) - 1)
    }


@needs_pidfd
def test_show_table_is_aligned(child: Child) -> None:
    expected = child.settings()
    result = run_cli("show", child.pid)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:5] == ["PID", "FD", "STATE", "LOCAL", "REMOTE"]
    assert header[5:] == [
        "KEEPALIVE",
        "IDLE(ms)",
        "INTERVAL(ms)",
        "PROBES",
        "USER_TIMEOUT(ms)",
        "UNANSWERED",
    ]
    rows = [line.split() for line in lines[1:]]
    assert sorted(int(r[1]) for r in rows) == sorted(child.tcp)
    # The last column is right-aligned, so aligned rows all end in one column.
    assert len({len(line) for line in lines}) == 1
    for row in rows:
        values = expected[int(row[1])]
        assert row[5] == ("on" if values["enabled"] else "off")
        assert [int(v) for v in row[6:10]] == [
            values["idle_ms"],
            values["interval_ms"],
            values["probes"],
            values["user_timeout_ms"],
        ]


@needs_pidfd
@needs_root
def test_show_without_pids_includes_the_child(child: Child) -> None:
    expected = child.settings()
    result = run_cli("show", "--json")
    document = json.loads(result.stdout)
    mine = {s["fd"]: s for s in document["sockets"] if s["pid"] == child.pid}
    assert {fd: s["keepalive"] for fd, s in mine.items()} == expected
    # Processes that could not be inspected are reported, never dropped silently.
    named = set()
    for line in result.stderr.splitlines():
        summary = re.search(
            r"not inspected, permission denied: \d+ process\(es\): ([\d, ]+);", line
        )
        if summary:
            named |= {int(pid) for pid in summary.group(1).split(", ")}
        single = re.match(r"netkeepalive show: pid (\d+): ", line)
        if single:
            named.add(int(single.group(1)))
    assert {error["pid"] for error in document["errors"]} == named


@needs_pidfd
def test_show_unknown_process_fails(main: Callable[[List[str]], int], capsys: Any) -> None:
    pid = _unused_pid()
    assert main(["show", str(pid)]) == 1
    assert f"pid {pid}: no such process" in capsys.readouterr().err


def _unused_pid() -> int:
    limit = int(Path("/proc/sys/kernel/pid_max").read_text())
    for pid in range(limit - 1, limit - 1000, -1):
        if not Path(f"/proc/{pid}").exists():
            return pid
    pytest.skip("no free process id found near pid_max")


# -- set -------------------------------------------------------------------


@needs_pidfd
def test_set_changes_every_tcp_socket(child: Child) -> None:
    state = child.read()
    before = {int(fd): v for fd, v in state["tcp"].items()}
    result = run_cli(
        "set",
        child.pid,
        "--enable",
        "--idle",
        61_500,  # whole seconds on Linux: read back as 61000
        "--interval",
        7000,
        "--probes",
        5,
        "--user-timeout",
        4321,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    reported = {s["fd"]: s for s in document["sockets"]}
    assert set(reported) == set(child.tcp)
    new = {"enabled": True, "idle_ms": 61_000, "interval_ms": 7000, "probes": 5}
    new["user_timeout_ms"] = 4321
    for fd, sock in reported.items():
        assert sock["error"] is None
        assert settings_only(sock["before"]) == settings_only(before[fd])
        assert settings_only(sock["after"]) == new
    after_state = child.read()
    for fd, values in after_state["tcp"].items():
        assert settings_only(values) == new, fd
    untouched(state, after_state)


@needs_pidfd
def test_set_detect_within_applies_the_library_plan(child: Child) -> None:
    import netkeepalive

    plan = netkeepalive.detect_within(30_000)
    result = run_cli("set", child.pid, "--enable", "--detect-within", 30_000)
    assert result.returncode == 0, result.stderr
    new = {
        "enabled": True,
        "idle_ms": plan["idle"],
        "interval_ms": plan["interval"],
        "probes": plan["probes"],
        "user_timeout_ms": plan["user_timeout"],
    }
    for fd, values in child.read()["tcp"].items():
        assert settings_only(values) == new, fd


@needs_pidfd
def test_set_only_the_given_fd_and_keeps_keepalive_state(child: Child) -> None:
    before = child.settings()
    off = [fd for fd, v in before.items() if not v["enabled"]]
    target = off[0]
    other = [fd for fd in before if fd != target]
    result = run_cli("set", child.pid, "--fd", target, "--idle", 20_000, "--no-enable")
    assert result.returncode == 0, result.stderr
    after = child.settings()
    # --no-enable: SO_KEEPALIVE stays off.
    assert settings_only(after[target]) == dict(settings_only(before[target]), idle_ms=20_000)
    for fd in other:
        assert after[fd] == before[fd]
    table = result.stdout.splitlines()
    assert table[0].split()[5] == "WHEN"
    assert [line.split()[5] for line in table[1:]] == ["before", "after"]


@needs_pidfd
def test_set_disable(child: Child) -> None:
    on = [fd for fd, v in child.settings().items() if v["enabled"]]
    result = run_cli("set", child.pid, "--fd", on[0], "--disable")
    assert result.returncode == 0, result.stderr
    assert child.settings()[on[0]]["enabled"] is False


@needs_pidfd
def test_set_refuses_non_tcp_descriptors_and_changes_nothing(child: Child) -> None:
    state = child.read()
    tcp_fd = min(child.tcp)
    result = run_cli(
        "set", child.pid, "--fd", tcp_fd, "--fd", child.udp, "--fd", child.pipe[0], "--idle", 9000
    )
    assert result.returncode == 1
    assert f"fd {child.udp}: not a TCP socket (UDP socket:[" in result.stderr
    assert f"fd {child.pipe[0]}: not a TCP socket (pipe:[" in result.stderr
    assert "nothing was changed" in result.stderr
    after = child.read()
    assert after["tcp"] == state["tcp"]  # the TCP fd given too
    untouched(state, after)


@needs_pidfd
def test_set_closed_fd_is_named(child: Child) -> None:
    before = child.settings()
    free = max(child.tcp) + 100
    result = run_cli("set", child.pid, "--fd", free, "--idle", 9000)
    assert result.returncode == 1
    assert f"fd {free}: not an open descriptor of the process" in result.stderr
    assert child.settings() == before


@needs_pidfd
def test_set_failure_names_the_socket_and_why(
    child: Child, main: Callable[[List[str]], int], capsys: Any, refuse_option: Any
) -> None:
    """A kernel refusal on one socket (errno injected) is reported; the others change."""
    before = child.settings()
    victim = sorted(fd for fd, v in before.items() if v["enabled"])[0]
    victim_inode = os.stat(f"/proc/{child.pid}/fd/{victim}").st_ino
    refuse_option(
        socket.IPPROTO_TCP,
        socket.TCP_KEEPCNT,
        errno.EINVAL,
        when=lambda fd: os.fstat(fd).st_ino == victim_inode,
    )
    fds = open_fds()
    status = main(["set", str(child.pid), "--probes", "9"])
    err = capsys.readouterr().err
    assert open_fds() == fds
    assert status == 1
    assert f"pid {child.pid} fd {victim} (" in err
    assert "setsockopt(TCP_KEEPCNT): [Errno 22] Invalid argument" in err
    after = child.settings()
    assert after[victim] == before[victim]
    for fd in before:
        if fd != victim:
            assert after[fd]["probes"] == 9


# -- descriptors of the command's own process ------------------------------


@needs_pidfd
def test_cli_process_descriptors_are_unchanged(
    child: Child, main: Callable[[List[str]], int], capsys: Any
) -> None:
    fds_before = open_fds()
    assert main(["show", str(child.pid)]) == 0
    assert main(["show", str(child.pid), "--json"]) == 0
    assert main(["set", str(child.pid), "--idle", "30000", "--enable"]) == 0
    assert main(["set", str(child.pid), "--fd", str(child.udp), "--idle", "30000"]) == 1
    assert main(["set", str(_unused_pid()), "--idle", "30000"]) == 1
    with pytest.raises(SystemExit):
        main(["set", str(child.pid), "--idle", "-1"])
    capsys.readouterr()
    assert open_fds() == fds_before
    assert all(v["idle_ms"] == 30_000 for v in child.settings().values())


# -- argument errors -------------------------------------------------------


@needs_pidfd
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set"], r"the following arguments are required: PID"),
        (["set", "abc", "--idle", "1000"], r"not a process id: 'abc'"),
        (["set", "0", "--idle", "1000"], r"not a process id: '0'"),
        (["set", "{pid}"], r"nothing to change: give --enable, --disable"),
        (
            ["set", "{pid}", "--idle", "0"],
            r"--idle: 0( ms)? is out of range; TCP_KEEPIDLE takes 1 ",
        ),
        (["set", "{pid}", "--idle", "500"], r"--idle: 500 ms is less than one second"),
        (["set", "{pid}", "--interval", "-5"], r"--interval: -5( ms)? is negative; TCP_KEEPINTVL"),
        (
            ["set", "{pid}", "--probes", "128"],
            r"--probes: 128 is out of range; TCP_KEEPCNT takes 1 to 127",
        ),
        (["set", "{pid}", "--interval", "2s"], r"not a whole number: '2s'"),
        (["set", "{pid}", "--enable", "--disable"], r"not allowed with argument --enable"),
        (["set", "{pid}", "--fd", "x", "--idle", "2000"], r"not a descriptor number: 'x'"),
        (
            ["set", "{pid}", "--user-timeout", "2147483648"],
            r"--user-timeout: 2147483648( ms)? is out of range; TCP_USER_TIMEOUT",
        ),
        (
            ["set", "{pid}", "--detect-within", "30000", "--idle", "5000"],
            r"--detect-within chooses --idle itself",
        ),
        (["set", "{pid}", "--detect-within", "999"], r"--detect-within: 999 ms is below"),
        (["show", "nine"], r"not a process id: 'nine'"),
        # Numbers past a C int would wrap on their way into the kernel.
        (["set", "4294967297", "--idle", "1000"], r"not a process id: '4294967297'"),
        (["show", "{pid}", "4294967297"], r"not a process id: '4294967297'"),
        (
            ["set", "{pid}", "--fd", "4294967296", "--idle", "2000"],
            r"not a descriptor number: '4294967296'",
        ),
    ],
)
def test_argument_errors_exit_2_with_usage(child: Child, args: List[str], message: str) -> None:
    before = child.settings()
    result = run_cli(*(a.format(pid=child.pid) for a in args))
    assert result.returncode == 2
    assert result.stderr.startswith("usage: netkeepalive ")
    assert re.search(message, result.stderr), result.stderr
    assert result.stdout == ""
    assert child.settings() == before


# -- permissions -----------------------------------------------------------


def python_as(*prefixes: Sequence[str]) -> str:
    """A Python 3.9+ that every command *prefix* can run netkeepalive with.

    This interpreter first; when it lives where other users cannot read
    (e.g. under root's home), the system's ``python3``.  Skips the test
    when there is none.
    """
    problems: List[str] = []
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]
    for python in dict.fromkeys(candidates):
        if not os.path.exists(python):
            continue
        for prefix in prefixes:
            probe = subprocess.run(
                [*prefix, python, "-c", _PROBE],
                capture_output=True,
                text=True,
                env=_env(),
                cwd="/",
                timeout=60,
                check=False,
            )
            if probe.returncode != 0:
                detail = probe.stderr.strip().splitlines()[-1:] or ["?"]
                problems.append(f"{' '.join(prefix)} {python}: {detail[0]}")
                break
        else:
            return python
    pytest.skip("no Python that runs netkeepalive this way: " + "; ".join(problems))


_PROBE = "import sys; assert sys.version_info >= (3, 9); import netkeepalive.tcp_info"


@needs_pidfd
@needs_root
@pytest.mark.parametrize("command", ["set", "show"])
def test_unprivileged_user_against_root_process(child: Child, command: str) -> None:
    python = python_as(NOBODY)
    state = child.read()
    args: List[object] = [command, child.pid]
    if command == "set":
        args += ["--enable", "--idle", 5000, "--probes", 2]
    result = run_cli(*args, prefix=NOBODY, python=python)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"netkeepalive {command}: pid {child.pid}: permission denied")
    assert "same user id" in lines[0]
    assert "CAP_SYS_PTRACE" in lines[0]
    if command == "set":
        assert lines[0].endswith("nothing was changed")
    after = child.read()
    assert after["tcp"] == state["tcp"]
    untouched(state, after)


@needs_pidfd
@needs_root
def test_pidfd_getfd_refused_changes_nothing() -> None:
    """Same user id but a different real uid: /proc is readable, pidfd_getfd is not.

    ``pidfd_getfd`` checks ptrace access with the caller's *real* ids,
    reading ``/proc/PID/fd`` with its file-system ids, so the kernel itself
    refuses the borrow here (as Yama's ptrace_scope would).
    """
    caller = ["setpriv", "--ruid=65533", "--euid=65534", "--regid=65534", "--clear-groups"]
    python = python_as(NOBODY, caller)
    target = Child(prefix=NOBODY, python=python)
    try:
        state = target.read()
        listing = run_cli("show", target.pid, "--json", prefix=caller, python=python)
        assert listing.returncode == 1
        document = json.loads(listing.stdout)
        assert document["sockets"] == []
        [error] = document["errors"]
        assert error["pid"] == target.pid
        assert error["error"].startswith("permission denied (pidfd_getfd(pid ")
        assert "[Errno 1]" in error["error"]

        result = run_cli(
            "set", target.pid, "--enable", "--idle", 5000, prefix=caller, python=python
        )
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert "permission denied (pidfd_getfd(" in line
        assert "CAP_SYS_PTRACE" in line
        assert line.endswith("nothing was changed")
        after = target.read()
        assert after["tcp"] == state["tcp"]
        untouched(state, after)
    finally:
        target.close()


# -- another network namespace; unanswered probes ---------------------------


@needs_pidfd
@needs_root
@pytest.mark.slow
def test_show_reads_the_targets_namespace_and_counts_unanswered_probes() -> None:
    """A child in its own network namespace loses its loopback; probes go unanswered."""
    python = python_as(["unshare", "--net"])
    target = Child(prefix=["unshare", "--net"], args=["--lo-up"], python=python)
    try:
        shown = json.loads(run_cli("show", target.pid, "--json").stdout)
        assert {s["fd"] for s in shown["sockets"]} == set(target.tcp)
        client = sorted(fd for fd, v in target.tcp.items() if v["remote"].startswith("127."))[0]
        # TCP_USER_TIMEOUT 0: otherwise the child's user timeout drops the
        # connection after the first unanswered probe.
        result = run_cli(
            "set",
            target.pid,
            "--fd",
            client,
            "--enable",
            "--idle",
            1000,
            "--interval",
            1000,
            "--probes",
            10,
            "--user-timeout",
            0,
        )
        assert result.returncode == 0, result.stderr
        target.command("lo-down")
        deadline = time.monotonic() + 15
        unanswered = 0
        while unanswered < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            shown = json.loads(run_cli("show", target.pid, "--json").stdout)
            [sock] = [s for s in shown["sockets"] if s["fd"] == client]
            unanswered = sock["keepalive"]["unanswered_probes"]
        assert unanswered >= 2
        # The child's own count agrees (it can only have grown since).
        assert target.settings()[client]["unanswered_probes"] >= unanswered
    finally:
        target.close()


# -- the check on every borrowed descriptor --------------------------------


@needs_pidfd
def test_borrowed_descriptor_must_be_the_listed_tcp_socket(client: Any) -> None:
    """A reused descriptor number, or a socket that is not TCP, is refused."""
    import socket

    from netkeepalive._linux import _procfs
    from netkeepalive.cli import _retrofit as retrofit

    def check(pidfd: int, fd_number: int, listed: _procfs.TcpSocket) -> None:
        with _pidfd.borrowed(pidfd, fd_number) as fd:
            retrofit._verify(fd, listed)

    [listed] = _procfs.tcp_sockets(os.getpid(), only_fds=[client.fileno()])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fds = open_fds()
    try:
        with _pidfd.opened(os.getpid()) as pidfd:
            check(pidfd, client.fileno(), listed)  # the real thing passes
            reused = _procfs.TcpSocket(**dict(vars(listed), inode=listed.inode + 1))
            with pytest.raises(retrofit._SocketGone, match="now refers to something else"):
                check(pidfd, client.fileno(), reused)
            udp_inode = os.fstat(udp.fileno()).st_ino
            posing = _procfs.TcpSocket(**dict(vars(listed), fd=udp.fileno(), inode=udp_inode))
            with pytest.raises(retrofit._SocketGone, match="is not a TCP socket"):
                check(pidfd, udp.fileno(), posing)
        assert open_fds() == fds
    finally:
        udp.close()

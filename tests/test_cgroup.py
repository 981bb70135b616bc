"""``netkeepalive cgroup``: a sock_ops policy in a cgroup the test creates (Linux, root).

Every policy is attached by the command in a subprocess that has exited
before anything is checked, so each test also shows that the attachment
outlives the process that made it.  The processes in the cgroup are
plain Python children that never import netkeepalive: they read their own
sockets' options with the standard library and report them as JSON.
Every cgroup and every program attached to it is removed again, also when
a test fails.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from test_retrofit import NOBODY, ROOT, run_cli

#: The child: runs one command per line of standard input, answers with one
#: JSON line.  It has only the standard library (and never imports ours).
CHILD = r"""
import json, socket, sys, time

def options(s):
    get = s.getsockopt
    return {
        "enabled": get(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": get(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "interval": get(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "probes": get(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "user_timeout": get(socket.IPPROTO_TCP, 18),
        "imported_netkeepalive": any(m.split(".")[0] == "netkeepalive" for m in sys.modules),
    }

def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

held = []
say({"ready": True})
for line in sys.stdin:
    command, *rest = line.split()
    if command == "connect":
        s = socket.create_connection(("127.0.0.1", int(rest[0])))
        held.append(s)
        say(options(s))
    elif command == "listen":
        listener = socket.create_server(("127.0.0.1", 0))
        held.append(listener)
        say({"port": listener.getsockname()[1]})
    elif command == "accept":
        conn, _ = listener.accept()
        held.append(conn)
        say(options(conn))
    elif command == "wait-for-error":
        s = socket.create_connection(("127.0.0.1", int(rest[0])))
        start = time.monotonic()
        held.append(s)
        try:
            s.recv(1)
            say({"errno": None, "elapsed": time.monotonic() - start})
        except OSError as exc:
            say({"errno": exc.errno, "elapsed": time.monotonic() - start})
"""


def _why_not() -> Optional[str]:
    """Why these tests cannot run here, or ``None``."""
    if not sys.platform.startswith("linux"):
        return "cgroup sock_ops programs are Linux-only"
    if os.geteuid() != 0:
        return "needs root: creates cgroups and attaches BPF programs"
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpf, _bpfsys

    try:
        cgroup.cgroup2_mount()
        cgroup._check_kernel()
        fd = _bpfsys.prog_load(_bpfsys.PROG_TYPE_SOCK_OPS, _bpf.return_one_program(), "nka_probe")
        os.close(fd)
    except OSError as exc:
        return f"no cgroup v2 / BPF here: {exc}"
    return None


_REASON = _why_not()
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cgroup sock_ops programs are Linux-only"
)


def attach(path: str, *settings: object) -> None:
    result = run_cli("cgroup", "attach", path, *settings)
    assert result.returncode == 0, result.stderr


class Child:
    """A process running :data:`CHILD`, moved into *cgroup_dir* before it opens a socket."""

    def __init__(self, cgroup_dir: Optional[str] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
        )
        if cgroup_dir is not None:
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
                f.write(str(self.proc.pid))
        assert self._read() == {"ready": True}

    def _read(self) -> Dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the child exited"
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def ask(self, command: str) -> Dict[str, Any]:
        self.send(command)
        return self._read()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class Cgroup:
    """A cgroup made for one test: its directory, its name, its children."""

    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.name = name
        self.children: List[Child] = []
        self.foreign: List[int] = []
        self.subgroups: List[Cgroup] = []

    def subgroup(self, name: str) -> Cgroup:
        """A cgroup inside this one, removed with it."""
        sub = Cgroup(os.path.join(self.directory, name), f"{self.name}/{name}")
        os.mkdir(sub.directory)
        self.subgroups.append(sub)
        return sub

    def child(self, inside: bool = True) -> Child:
        child = Child(self.directory if inside else None)
        self.children.append(child)
        return child

    def programs(self) -> List[str]:
        """Names of the sock_ops programs attached to this cgroup itself."""
        from netkeepalive._linux import _bpfsys, _cgroupfs

        with _cgroupfs.opened(self.directory) as fd:
            _, ids = _bpfsys.prog_query(fd, _bpfsys.ATTACH_CGROUP_SOCK_OPS)
            names = []
            for prog_id in ids:
                prog = _bpfsys.prog_get_fd_by_id(prog_id)
                try:
                    names.append(_bpfsys.prog_info(prog).name)
                finally:
                    os.close(prog)
            return names

    def attach_foreign(self, multi: bool = True) -> None:
        """Attach a do-nothing sock_ops program of another name, with ALLOW_MULTI if *multi*."""
        from netkeepalive._linux import _bpf, _bpfsys, _cgroupfs

        prog = _bpfsys.prog_load(_bpfsys.PROG_TYPE_SOCK_OPS, _bpf.return_one_program(), "foreign")
        self.foreign.append(prog)
        flags = _bpfsys.F_ALLOW_MULTI if multi else 0
        with _cgroupfs.opened(self.directory) as fd:
            _bpfsys.prog_attach(fd, prog, _bpfsys.ATTACH_CGROUP_SOCK_OPS, flags)

    def remove(self) -> None:
        """Stop the children, detach every program, remove the directory."""
        from netkeepalive._linux import _bpfsys, _cgroupfs

        for sub in self.subgroups:
            sub.remove()
        for child in self.children:
            child.close()
        try:
            with _cgroupfs.opened(self.directory) as fd:
                _, ids = _bpfsys.prog_query(fd, _bpfsys.ATTACH_CGROUP_SOCK_OPS)
                for prog_id in ids:
                    prog = _bpfsys.prog_get_fd_by_id(prog_id)
                    try:
                        _bpfsys.prog_detach(fd, prog, _bpfsys.ATTACH_CGROUP_SOCK_OPS)
                    finally:
                        os.close(prog)
        finally:
            for prog in self.foreign:
                os.close(prog)
            os.rmdir(self.directory)


@pytest.fixture
def cg() -> Iterator[Cgroup]:
    """A fresh cgroup under the cgroup2 mount; removed with all it holds afterwards."""
    if _REASON is not None:
        pytest.skip(_REASON)
    from netkeepalive import cgroup

    name = f"netkeepalive-test-{uuid.uuid4().hex[:12]}"
    directory = os.path.join(cgroup.cgroup2_mount(), name)
    os.mkdir(directory)
    made = Cgroup(directory, "/" + name)
    try:
        yield made
    finally:
        made.remove()


def local_options(sock: socket.socket) -> Dict[str, int]:
    get = sock.getsockopt
    return {
        "enabled": get(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": get(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "interval": get(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "probes": get(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "user_timeout": get(socket.IPPROTO_TCP, 18),
    }


@pytest.fixture
def defaults(listener: socket.socket) -> Dict[str, int]:
    """The options of a new connection nobody configured (this system's defaults)."""
    with socket.create_connection(listener.getsockname()) as c:
        listener.accept()[0].close()
        return local_options(c)


POLICY = ("--idle", 3000, "--interval", 2000, "--probes", 4, "--user-timeout", 25000)
EXPECTED = {"enabled": 1, "idle": 3, "interval": 2, "probes": 4, "user_timeout": 25000}


def settings_of(report: Dict[str, Any]) -> Dict[str, Any]:
    return {k: report[k] for k in EXPECTED}


def test_client_in_the_cgroup_gets_the_policy(
    cg: Cgroup, listener: socket.socket, defaults: Dict[str, int]
) -> None:
    attach(cg.directory, *POLICY)  # full path; the attaching process has exited
    inside = cg.child()
    report = inside.ask(f"connect {listener.getsockname()[1]}")
    assert report["imported_netkeepalive"] is False
    assert settings_of(report) == EXPECTED
    # Its peer, accepted by this process outside the cgroup, is untouched ...
    server_end, _ = listener.accept()
    with server_end:
        assert local_options(server_end) == defaults
    # ... and so is a process outside the cgroup connecting the same way.
    outside = cg.child(inside=False)
    assert settings_of(outside.ask(f"connect {listener.getsockname()[1]}")) == defaults


def test_server_in_the_cgroup_gets_the_policy_on_accepted_sockets(
    cg: Cgroup, defaults: Dict[str, int]
) -> None:
    attach(cg.name.lstrip("/"), *POLICY)  # relative to the cgroup2 mount
    server = cg.child()
    port = server.ask("listen")["port"]
    with socket.create_connection(("127.0.0.1", port)) as client:
        accepted = server.ask("accept")
        assert settings_of(accepted) == EXPECTED
        assert local_options(client) == defaults  # this end is outside the cgroup


def test_status_reads_the_policy_back_from_the_kernel(cg: Cgroup) -> None:
    from netkeepalive import cgroup
    from netkeepalive.cli import _report

    expected = {
        "enabled": True,
        "idle_ms": 5000,
        "interval_ms": None,
        "probes": 3,
        "user_timeout_ms": None,
    }
    # as in /proc/PID/cgroup; attach --json prints what status --json prints
    attached = run_cli("cgroup", "attach", cg.name, "--idle", 5000, "--probes", 3, "--json")
    assert attached.returncode == 0, attached.stderr
    entry = {
        "cgroup": cg.name,
        "keepalive": expected,
        "enforce": {"enabled": False, "clamped": None},
    }
    assert json.loads(attached.stdout) == [entry]
    one = run_cli("cgroup", "status", cg.name, "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == [entry]
    every = run_cli("cgroup", "status", "--json")
    assert every.returncode == 0, every.stderr
    assert entry in json.loads(every.stdout)
    text = run_cli("cgroup", "status", cg.name)
    assert text.stdout == f"{cg.name}: keepalive on, idle 5000 ms, probes 3\n"
    policy = cgroup.status(cg.directory)
    assert policy is not None
    assert _report.policy_json(policy) == expected


def test_reattach_replaces_only_our_program(cg: Cgroup, listener: socket.socket) -> None:
    cg.attach_foreign()
    attach(cg.name, "--idle", 7000)
    attach(cg.name, "--idle", 4000, "--interval", 1000)
    assert sorted(cg.programs()) == ["foreign", "netkeepalive"]
    report = cg.child().ask(f"connect {listener.getsockname()[1]}")
    assert (report["enabled"], report["idle"], report["interval"]) == (1, 4, 1)


def test_detach_restores_defaults_and_keeps_other_programs(
    cg: Cgroup, listener: socket.socket, defaults: Dict[str, int]
) -> None:
    cg.attach_foreign()
    attach(cg.name, *POLICY)
    result = run_cli("cgroup", "detach", cg.name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{cg.name}: policy removed\n"
    assert cg.programs() == ["foreign"]
    assert settings_of(cg.child().ask(f"connect {listener.getsockname()[1]}")) == defaults
    again = run_cli("cgroup", "detach", cg.name)
    assert (again.returncode, again.stdout) == (0, f"{cg.name}: had no policy\n")
    assert cg.programs() == ["foreign"]


def test_show_mentions_the_cgroup_policy(cg: Cgroup, listener: socket.socket) -> None:
    attach(cg.name, "--idle", 6000)
    inside = cg.child()
    inside.ask(f"connect {listener.getsockname()[1]}")
    pid = inside.proc.pid
    table = run_cli("show", pid)
    assert table.returncode == 0, table.stderr
    assert f"pid {pid}: cgroup {cg.name}: keepalive on, idle 6000 ms\n" in table.stdout
    document = json.loads(run_cli("show", pid, "--json").stdout)
    # The policy's field names are those of each socket's ``keepalive`` object.
    socket_fields = set(document["sockets"][0]["keepalive"])
    assert set(document["cgroup_policies"][0]["keepalive"]) <= socket_fields
    assert document["cgroup_policies"] == [
        {
            "pid": pid,
            "cgroup": cg.name,
            "keepalive": {
                "enabled": True,
                "idle_ms": 6000,
                "interval_ms": None,
                "probes": None,
                "user_timeout_ms": None,
            },
        }
    ]


def test_policies_of_enclosing_cgroups_combine_as_the_kernel_runs_them(
    cg: Cgroup, listener: socket.socket
) -> None:
    """The inner cgroup's program runs first, the outer one's last: its values win."""
    from netkeepalive import cgroup

    inner = cg.subgroup("inner")
    attach(cg.name, "--idle", 3000)
    attach(inner.name, "--idle", 9000, "--probes", 5)
    child = inner.child()
    report = child.ask(f"connect {listener.getsockname()[1]}")
    assert (report["enabled"], report["idle"], report["probes"]) == (1, 3, 5)
    assert cgroup.effective_policy(child.proc.pid) == (
        cg.name,
        cgroup.Policy(True, 3000, None, 5, None),
    )
    assert cgroup.status(inner.name) == cgroup.Policy(True, 9000, None, 5, None)


def _one_line_failure(result: subprocess.CompletedProcess[str], start: str) -> str:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(start), lines[0]
    return lines[0]


def test_unprivileged_attach_is_refused_and_attaches_nothing(cg: Cgroup) -> None:
    probe = subprocess.run(
        [*NOBODY, sys.executable, "-c", "import netkeepalive.cgroup"],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd="/",
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run this Python: {probe.stderr[-200:]!r}")
    result = run_cli("cgroup", "attach", cg.directory, "--idle", 5000, prefix=NOBODY)
    line = _one_line_failure(result, "netkeepalive cgroup attach: ")
    assert "Operation not permitted" in line
    assert "needs root (CAP_SYS_ADMIN" in line
    assert cg.programs() == []


def test_missing_cgroup_is_one_line(cg: Cgroup) -> None:
    for action in ("attach", "status", "detach"):
        result = run_cli("cgroup", action, cg.name + "/no-such-child")
        line = _one_line_failure(result, f"netkeepalive cgroup {action}: no such cgroup: ")
        assert "cgroup v2 hierarchy" in line
    # A directory that is not in the cgroup v2 hierarchy is refused the same way.
    _one_line_failure(run_cli("cgroup", "attach", "/tmp"), "netkeepalive cgroup attach: no such")
    assert cg.programs() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle", "500"], "--idle: 500 ms is less than one second"),
        (["--probes", "0"], "--probes: 0 is out of range"),
        (["--interval", "x"], "not a whole number"),
        (["--detect-within", "9000", "--idle", "1000"], "--detect-within chooses --idle"),
    ],
)
def test_bad_values_are_refused_like_set(cg: Cgroup, args: List[str], message: str) -> None:
    result = run_cli("cgroup", "attach", cg.name, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert cg.programs() == []
    if "--detect-within" not in args:  # the same words as ``set``
        same = run_cli("set", os.getpid(), *args)
        assert same.returncode == 2
        assert message in same.stderr


def probe_cgroups() -> List[str]:
    from netkeepalive import cgroup

    return [n for n in os.listdir(cgroup.cgroup2_mount()) if n.startswith("netkeepalive-probe-")]


@pytest.fixture
def linux_5_8(mocker: Any) -> None:
    """A release number before 5.9 (this kernel's own code answers the probe)."""
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, "5.8.18", real.version, real.machine))
    mocker.patch("os.uname", return_value=fake)


def test_older_release_with_the_options_is_probed_and_accepted(
    cg: Cgroup, listener: socket.socket, linux_5_8: None
) -> None:
    """A release number before 5.9 whose bpf_setsockopt takes the options (a backport)."""
    from netkeepalive import cgroup

    fds = open_fds()
    assert cgroup.attach(cg.directory, idle=3000) == cgroup.Policy(True, 3000, None, None, None)
    assert (probe_cgroups(), open_fds()) == ([], fds)
    assert cg.programs() == ["netkeepalive"]
    report = cg.child().ask(f"connect {listener.getsockname()[1]}")
    assert (report["enabled"], report["idle"]) == (1, 3)


def test_older_release_that_refuses_an_option_is_refused(
    cg: Cgroup, linux_5_8: None, mocker: Any
) -> None:
    """The probe's TCP_KEEPCNT of 0 is refused by this kernel's bpf_setsockopt, as an
    old kernel refuses an option it does not know: nothing is attached."""
    from netkeepalive import cgroup
    from netkeepalive._linux import _cgroup_probe

    mocker.patch.dict(_cgroup_probe._PROBE_VALUES, {"probes": 0})
    with pytest.raises(cgroup.CgroupError) as caught:
        cgroup.attach(cg.directory, idle=5000)
    assert caught.value.errno == errno.EOPNOTSUPP
    message = str(caught.value)
    assert "Linux 5.8.18: bpf_setsockopt accepts SO_KEEPALIVE," in message
    assert "from Linux 5.9, and a test connection here shows it refusing TCP_KEEPCNT" in message
    assert "(Invalid argument); nothing was attached" in message
    assert cg.programs() == []
    assert probe_cgroups() == []


def test_older_release_without_a_test_connection_is_refused(
    cg: Cgroup, linux_5_8: None, mocker: Any
) -> None:
    from netkeepalive import cgroup

    mocker.patch("sys.executable", "")
    with pytest.raises(cgroup.CgroupError) as caught:
        cgroup.attach(cg.directory, idle=5000)
    assert "testing for a backport failed" in str(caught.value)
    assert cg.programs() == []
    assert probe_cgroups() == []


def test_library_api_round_trip(cg: Cgroup) -> None:
    from netkeepalive import cgroup

    policy = cgroup.attach(cg.directory, idle=2500, probes=2)
    assert policy == cgroup.Policy(True, 2000, None, 2, None)  # whole seconds on Linux
    assert cgroup.status(cg.name) == policy
    with pytest.raises(ValueError, match=r"idle: .* out of range"):
        cgroup.attach(cg.directory, idle=10**9)
    with pytest.raises(TypeError):
        cgroup.attach(cg.directory, idle="5s")
    assert cgroup.status(cg.name) == policy  # unchanged by the refused calls
    assert cgroup.detach(cg.name) is True
    assert cgroup.status(cg.name) is None


@pytest.mark.slow
def test_silent_peer_times_out_within_the_policy(cg: Cgroup, listener: socket.socket) -> None:
    """The demo's experiment, with the settings coming from the cgroup alone."""
    from netkeepalive._linux._silence import silence

    idle, interval, probes = 1, 1, 2
    attach(cg.name, "--idle", idle * 1000, "--interval", interval * 1000, "--probes", probes)
    inside = cg.child()
    inside.send(f"wait-for-error {listener.getsockname()[1]}")
    server_end, _ = listener.accept()
    with server_end:
        silence(server_end)
        report: Dict[str, Any] = inside._read()
    assert report["errno"] == errno.ETIMEDOUT
    predicted = idle + interval * probes
    assert predicted - 0.2 <= report["elapsed"] <= predicted + 1.0, report


def test_cgroup2_mount_is_read_from_the_mount_table(tmp_path: Path) -> None:
    """Found wherever it is mounted (octal escapes undone); a clear error without one."""
    from netkeepalive import cgroup

    table = tmp_path / "mounts"
    table.write_text(
        "tmpfs /cg tmpfs ro 0 0\n"
        "cgroup /cg/cpu cgroup rw,cpu 0 0\n"
        "cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n"
    )
    assert cgroup.cgroup2_mount(str(table)) == "/mnt/my cgroups"
    table.write_text("cgroup /cg/cpu cgroup rw,cpu 0 0\n")
    with pytest.raises(cgroup.CgroupError) as caught:
        cgroup.cgroup2_mount(str(table))
    assert caught.value.errno == errno.ENOENT
    assert "need cgroup v2" in str(caught.value)


def test_during_a_reattach_the_new_policy_wins(cg: Cgroup, listener: socket.socket) -> None:
    """Re-attach attaches the new program before it detaches the old one.

    The moment between is frozen here (the old program is not detached): a
    cgroup runs its programs in the order they were attached, so the new one
    runs last and its values win; a value it leaves alone comes from the old.
    ``status`` combines them the same way.
    """
    from netkeepalive import cgroup

    cgroup.attach(cg.directory, idle=7000, user_timeout=30000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cgroup, "_detach_ids", lambda *args: None)
        cgroup.attach(cg.directory, idle=4000, interval=1000)
    assert cg.programs() == ["netkeepalive", "netkeepalive"]
    report = cg.child().ask(f"connect {listener.getsockname()[1]}")
    assert settings_of(report)["idle"] == 4
    assert (report["interval"], report["user_timeout"]) == (1, 30000)
    assert cgroup.status(cg.name) == cgroup.Policy(True, 4000, 1000, None, 30000)


class FailingBpf:
    """The C library's ``syscall``; one ``bpf(2)`` command fails with *error* (*times* times)."""

    def __init__(self, command: int, error: int, times: int = 1) -> None:
        from netkeepalive._libc import libc

        self.real = libc()
        self.command = command
        self.error = error
        self.times = times

    def syscall(self, number: Any, cmd: Any, *args: Any) -> int:
        if cmd.value == self.command and self.times > 0:
            self.times -= 1
            import ctypes

            ctypes.set_errno(self.error)
            return -1
        result: int = self.real.syscall(number, cmd, *args)
        return result


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "command",
    [
        "MAP_CREATE",
        "MAP_UPDATE_ELEM",
        "PROG_LOAD",
        "PROG_ATTACH",
        "MAP_LOOKUP_ELEM",
        "PROG_DETACH",
    ],
)
def test_a_failing_reattach_leaves_the_old_policy_and_no_descriptor(
    cg: Cgroup, listener: socket.socket, mocker: Any, command: str
) -> None:
    """Each bpf(2) step of attach refused in turn: the earlier policy stays alone."""
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys

    old = cgroup.attach(cg.directory, idle=7000, probes=3)
    before = open_fds()
    mocker.patch.object(_bpfsys, "libc", return_value=FailingBpf(getattr(_bpfsys, command), 12))
    with pytest.raises(cgroup.CgroupError) as caught:
        cgroup.attach(cg.directory, idle=4000, probes=5)
    mocker.stopall()
    assert caught.value.errno == errno.ENOMEM
    assert f"bpf(BPF_{command})" in str(caught.value)
    assert open_fds() == before
    assert cg.programs() == ["netkeepalive"]
    assert cgroup.status(cg.name) == old
    report = cg.child().ask(f"connect {listener.getsockname()[1]}")
    assert (report["idle"], report["probes"]) == (7, 3)


def test_a_reattach_that_cannot_undo_itself_says_so(cg: Cgroup, listener: socket.socket) -> None:
    """Detaching the old program fails and so does detaching the new one again."""
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys

    cgroup.attach(cg.directory, idle=7000, probes=3)
    failing = FailingBpf(_bpfsys.PROG_DETACH, errno.ENOMEM, times=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_bpfsys, "libc", lambda: failing)
        with pytest.raises(cgroup.CgroupError) as caught:
            cgroup.attach(cg.directory, idle=4000)
    assert "detaching the new program again failed too" in str(caught.value)
    assert cg.programs() == ["netkeepalive", "netkeepalive"]
    assert cgroup.status(cg.name) == cgroup.Policy(True, 4000, None, 3, None)
    report = cg.child().ask(f"connect {listener.getsockname()[1]}")
    assert (report["idle"], report["probes"]) == (4, 3)


def run_main(capsys: Any, *args: object) -> str:
    """``netkeepalive ARGS`` in this process; its one line of standard error."""
    from netkeepalive import cli

    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (errno.ENOSYS, "Function not implemented; this kernel has no bpf(2) system call"),
        (errno.EPERM, "Operation not permitted; needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN"),
    ],
)
@pytest.mark.parametrize("action", ["attach", "status", "detach"])
def test_bpf_missing_or_refused_is_one_line(
    cg: Cgroup, mocker: Any, capsys: Any, error: int, hint: str, action: str
) -> None:
    """``bpf(2)`` missing (ENOSYS) or refused (EPERM: privileges, lockdown, seccomp)."""
    from netkeepalive._linux import _bpfsys

    failing = FailingBpf(_bpfsys.PROG_QUERY, error, times=99)
    mocker.patch.object(_bpfsys, "libc", return_value=failing)
    line = run_main(capsys, "cgroup", action, cg.name, *(["--idle", 5000] * (action == "attach")))
    mocker.stopall()
    assert line.startswith(f"netkeepalive cgroup {action}: "), line
    assert f"cgroup {cg.name}: bpf(BPF_PROG_QUERY): {hint}" in line
    assert cg.programs() == []


@pytest.mark.parametrize("args", [["attach", "x", "--idle", "5000"], ["status"], ["detach", "x"]])
def test_no_cgroup_v2_is_one_line(
    tmp_path: Path, mocker: Any, capsys: Any, args: List[str]
) -> None:
    """A mount table without cgroup2 (a cgroup v1 only system); needs no root."""
    from netkeepalive._linux import _cgroupfs

    table = tmp_path / "mounts"
    table.write_text("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")
    mocker.patch.object(_cgroupfs, "_MOUNTS", str(table))
    line = run_main(capsys, "cgroup", *args)
    assert line == (
        f"netkeepalive cgroup {args[0]}: no cgroup v2 hierarchy is mounted (no cgroup2 entry "
        f"in {table}); cgroup keepalive policies need cgroup v2"
    )


def test_a_program_attached_without_allow_multi_is_left_alone(cg: Cgroup) -> None:
    """Another tool's program attached exclusively: attach says so and adds nothing."""
    cg.attach_foreign(multi=False)
    result = run_cli("cgroup", "attach", cg.name, "--idle", 5000)
    line = _one_line_failure(result, "netkeepalive cgroup attach: ")
    assert "attached to cgroup" in line
    assert "without BPF_F_ALLOW_MULTI" in line
    assert cg.programs() == ["foreign"]


def test_cap_bpf_alone_attaches_once_but_cannot_replace(cg: Cgroup) -> None:
    """Root without CAP_SYS_ADMIN (CAP_BPF and CAP_NET_ADMIN kept).

    ``BPF_PROG_QUERY`` needs only CAP_NET_ADMIN, so a first attach works;
    opening the attached program by id to recognise it needs CAP_SYS_ADMIN.
    """
    from netkeepalive import cgroup

    no_sys_admin = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"]
    probe = subprocess.run([*no_sys_admin, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop CAP_SYS_ADMIN here: {probe.stderr!r}")
    first = run_cli("cgroup", "attach", cg.name, "--idle", 5000, prefix=no_sys_admin)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{cg.name}: keepalive on, idle 5000 ms\n"
    again = run_cli("cgroup", "attach", cg.name, "--idle", 9000, prefix=no_sys_admin)
    line = _one_line_failure(again, "netkeepalive cgroup attach: reading the programs ")
    assert "bpf(BPF_PROG_GET_FD_BY_ID)" in line
    assert "Operation not permitted; opening a program or map that is attached" in line
    assert "needs CAP_SYS_ADMIN" in line
    assert cg.programs() == ["netkeepalive"]
    assert cgroup.status(cg.name) == cgroup.Policy(True, 5000, None, None, None)

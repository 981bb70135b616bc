"""``cgroup attach --enforce``: the policy as a ceiling (Linux, root).

Processes in the test cgroup are plain Python children (they never import
netkeepalive): each is moved into the cgroup by this process before it
makes a socket, does what the test asks, and reports what the kernel says
(``socket.getsockopt``, errno) as JSON.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Sequence

import pytest
from test_cgroup import _REASON, Cgroup, attach, cg, run_cli  # noqa: F401  (cg: a fixture)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cgroup BPF programs are Linux-only"
)

#: The policy of the enforcement tests (CLI units) and what it is in the kernel's.
POLICY = ("--idle", 30000, "--interval", 5000, "--probes", 4, "--user-timeout", 20000)
KERNEL = {"enabled": 1, "idle": 30, "interval": 5, "probes": 4, "user_timeout": 20000}

#: Prelude of every child: say ready, wait for "go" (by then it is in the cgroup).
GO = "import json, socket, sys\nprint('ready', flush=True)\nsys.stdin.readline()\n"

#: Writes each option of argv[2] (JSON: [name, level, number, value]) on a
#: connected socket and reports the value read back after each write.
WRITER = (
    GO
    + r"""
listener = socket.create_server(("127.0.0.1", 0))
s = socket.create_connection(listener.getsockname())
report = {}
for name, level, number, value in json.loads(sys.argv[1]):
    try:
        s.setsockopt(level, number, value)
        report[name] = s.getsockopt(level, number)
    except OSError as exc:
        report[name] = "errno %d" % exc.errno
print(json.dumps(report), flush=True)
"""
)

TCP, SOL = socket.IPPROTO_TCP, socket.SOL_SOCKET


def start(code: str, args: Sequence[str], group: Cgroup, prefix: Sequence[str] = ()) -> Any:
    """A child running *code*, moved into *group* before it goes on."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-I", "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    with open(os.path.join(group.directory, "cgroup.procs"), "w") as f:
        f.write(str(proc.pid))
    assert proc.stdout.readline() == "ready\n"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc


def report_of(proc: Any, timeout: float = 60) -> Dict[str, Any]:
    """The child's JSON report; a child still running after *timeout* s is killed."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, out
    result: Dict[str, Any] = json.loads(out)
    return result


def write_options(group: Cgroup, writes: List[List[Any]]) -> Dict[str, Any]:
    return report_of(start(WRITER, [json.dumps(writes)], group))


def setsockopt_programs(group: Cgroup) -> List[str]:
    """Names of the cgroup/setsockopt programs attached to *group* itself."""
    from netkeepalive._linux import _bpfsys, _cgroupfs

    with _cgroupfs.opened(group.directory) as fd:
        _, ids = _bpfsys.prog_query(fd, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)
        names = []
        for prog_id in ids:
            prog = _bpfsys.prog_get_fd_by_id(prog_id)
            try:
                names.append(_bpfsys.prog_info(prog).name)
            finally:
                os.close(prog)
        return names


@pytest.fixture
def enforced(cg: Cgroup) -> Iterator[Cgroup]:  # noqa: F811
    """*cg* with :data:`POLICY` attached with ``--enforce``; its setsockopt programs
    are removed afterwards too (``cg`` removes the sock_ops ones)."""
    attach(cg.name, *POLICY, "--enforce")
    try:
        yield cg
    finally:
        from netkeepalive._linux import _bpfsys, _cgroupfs

        with _cgroupfs.opened(cg.directory) as fd:
            _, ids = _bpfsys.prog_query(fd, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)
            for prog_id in ids:
                prog = _bpfsys.prog_get_fd_by_id(prog_id)
                try:
                    _bpfsys.prog_detach(fd, prog, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)
                finally:
                    os.close(prog)


# -- enforcing ---------------------------------------------------------------


def test_longer_values_are_clamped_shorter_ones_kept(enforced: Cgroup) -> None:
    report = write_options(
        enforced,
        [
            ["keepalive_off", SOL, socket.SO_KEEPALIVE, 0],
            ["idle_7200", TCP, socket.TCP_KEEPIDLE, 7200],
            ["interval_75", TCP, socket.TCP_KEEPINTVL, 75],
            ["probes_9", TCP, socket.TCP_KEEPCNT, 9],
            ["user_timeout_0", TCP, 18, 0],
            ["user_timeout_long", TCP, 18, 600000],
            ["idle_10", TCP, socket.TCP_KEEPIDLE, 10],  # shorter: the application's choice
            ["interval_5", TCP, socket.TCP_KEEPINTVL, 5],  # equal: kept
            ["probes_2", TCP, socket.TCP_KEEPCNT, 2],
            ["user_timeout_1000", TCP, 18, 1000],
            ["idle_0", TCP, socket.TCP_KEEPIDLE, 0],  # refused by the kernel, as without us
            ["nodelay", TCP, socket.TCP_NODELAY, 1],  # not ours
        ],
    )
    assert report == {
        "keepalive_off": 1,
        "idle_7200": KERNEL["idle"],
        "interval_75": KERNEL["interval"],
        "probes_9": KERNEL["probes"],
        "user_timeout_0": KERNEL["user_timeout"],
        "user_timeout_long": KERNEL["user_timeout"],
        "idle_10": 10,
        "interval_5": 5,
        "probes_2": 2,
        "user_timeout_1000": 1000,
        "idle_0": f"errno {errno.EINVAL}",
        "nodelay": 1,
    }
    from netkeepalive import cgroup

    policy = cgroup.status(enforced.name)
    assert policy is not None
    assert (policy.enforced, policy.clamped) == (True, 6)


def test_status_shows_enforcement_and_the_count(enforced: Cgroup) -> None:
    write_options(enforced, [["idle", TCP, socket.TCP_KEEPIDLE, 7200]])
    keepalive = {
        "enabled": True,
        "idle_ms": 30000,
        "interval_ms": 5000,
        "probes": 4,
        "user_timeout_ms": 20000,
    }
    one = run_cli("cgroup", "status", enforced.name, "--json")
    assert one.returncode == 0, one.stderr
    entry = {"cgroup": enforced.name, "keepalive": keepalive}
    assert json.loads(one.stdout) == [{**entry, "enforce": {"enabled": True, "clamped": 1}}]
    every = run_cli("cgroup", "status", "--json")
    assert {**entry, "enforce": {"enabled": True, "clamped": 1}} in json.loads(every.stdout)
    text = run_cli("cgroup", "status", enforced.name)
    assert text.stdout == (
        f"{enforced.name}: keepalive on, idle 30000 ms, interval 5000 ms, probes 4, "
        "user timeout 20000 ms; enforced, 1 write clamped\n"
    )


def test_attach_reports_enforcement_and_plain_status_says_off(cg: Cgroup) -> None:  # noqa: F811
    attached = run_cli("cgroup", "attach", cg.name, "--idle", 5000, "--enforce", "--json")
    assert attached.returncode == 0, attached.stderr
    assert json.loads(attached.stdout)[0]["enforce"] == {"enabled": True, "clamped": 0}
    assert setsockopt_programs(cg) == ["netkeepalive"]
    # Re-attaching without --enforce replaces the policy and ends enforcement.
    plain = run_cli("cgroup", "attach", cg.name, "--idle", 5000, "--json")
    assert json.loads(plain.stdout)[0]["enforce"] == {"enabled": False, "clamped": None}
    assert setsockopt_programs(cg) == []
    assert write_options(cg, [["idle", TCP, socket.TCP_KEEPIDLE, 7200]]) == {"idle": 7200}
    none = run_cli("cgroup", "status", cg.name, "--json")
    assert json.loads(none.stdout)[0]["enforce"] == {"enabled": False, "clamped": None}
    run_cli("cgroup", "detach", cg.name)
    gone = run_cli("cgroup", "status", cg.name, "--json")
    assert json.loads(gone.stdout) == [{"cgroup": cg.name, "keepalive": None, "enforce": None}]


def test_reattach_with_enforce_replaces_both(enforced: Cgroup) -> None:
    attach(enforced.name, "--idle", 20000, "--enforce")
    assert setsockopt_programs(enforced) == ["netkeepalive"]
    assert enforced.programs() == ["netkeepalive"]
    report = write_options(enforced, [["idle", TCP, socket.TCP_KEEPIDLE, 25]])
    assert report == {"idle": 20}


def test_detach_removes_both_programs_and_keeps_others(enforced: Cgroup) -> None:
    from netkeepalive._linux import _bpf, _bpfsys, _cgroupfs

    foreign = _bpfsys.prog_load(
        _bpfsys.PROG_TYPE_CGROUP_SOCKOPT,
        _bpf.return_one_program(),
        "foreign",
        attach_type=_bpfsys.ATTACH_CGROUP_SETSOCKOPT,
    )
    try:
        with _cgroupfs.opened(enforced.directory) as fd:
            _bpfsys.prog_attach(
                fd, foreign, _bpfsys.ATTACH_CGROUP_SETSOCKOPT, _bpfsys.F_ALLOW_MULTI
            )
    finally:
        os.close(foreign)
    result = run_cli("cgroup", "detach", enforced.name)
    assert (result.returncode, result.stdout) == (0, f"{enforced.name}: policy removed\n")
    assert setsockopt_programs(enforced) == ["foreign"]
    assert enforced.programs() == []
    assert write_options(enforced, [["off", SOL, socket.SO_KEEPALIVE, 0]]) == {"off": 0}


def test_py_amqp_transport_options_are_clamped(enforced: Cgroup) -> None:
    """py-amqp writes keepalive 60/10/9 and TCP_USER_TIMEOUT 1000 after connecting."""
    pytest.importorskip("amqp")
    code = (
        GO
        + r"""
import amqp.transport
listener = socket.create_server(("127.0.0.1", 0))
t = amqp.transport.Transport("127.0.0.1:%d" % listener.getsockname()[1], connect_timeout=5)
t.connect()
get = t.sock.getsockopt
print(json.dumps({
    "enabled": get(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "idle": get(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "interval": get(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    "probes": get(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    "user_timeout": get(socket.IPPROTO_TCP, 18),
}), flush=True)
"""
    )
    report = report_of(start(code, [], enforced))
    # 60 s idle, 10 s interval and 9 probes are above the policy; 1000 ms is below.
    assert report == {**KERNEL, "user_timeout": 1000}
    from netkeepalive import cgroup

    policy = cgroup.status(enforced.name)
    assert policy is not None
    assert policy.clamped == 3


#: Connects to argv[1], turns keepalive down as an application might, reports the
#: options in force, then waits for the connection to fail and reports how.
DOWNGRADER = (
    GO
    + r"""
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7200)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 9)
print(json.dumps({
    "enabled": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "idle": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "probes": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
}), flush=True)
try:
    s.recv(1)
    print(json.dumps({"errno": None}), flush=True)
except OSError as exc:
    print(json.dumps({"errno": exc.errno}), flush=True)
"""
)


@pytest.mark.slow
def test_an_application_that_turns_keepalive_down_still_detects_a_silent_peer(
    cg: Cgroup,  # noqa: F811
    listener: socket.socket,
) -> None:
    """Keepalive off, 2 hours idle, 9 probes from the application; the policy
    (1 s, 1 s, 2 probes, enforced) is what the kernel uses: the silent peer is
    detected in seconds instead of never."""
    from netkeepalive._linux._silence import silence

    attach(cg.name, "--idle", 1000, "--interval", 1000, "--probes", 2, "--enforce")
    child = start(DOWNGRADER, [str(listener.getsockname()[1])], cg)
    try:
        server_end, _ = listener.accept()
        with server_end:
            assert json.loads(child.stdout.readline()) == {"enabled": 1, "idle": 1, "probes": 2}
            silence(server_end)
            assert report_of(child, timeout=30) == {"errno": errno.ETIMEDOUT}
    finally:
        child.kill()
        child.communicate()
        from netkeepalive import cgroup

        cgroup.detach(cg.name)


class FailingNth:
    """``syscall`` whose *nth* ``bpf(2)`` command *command* fails with ENOMEM."""

    def __init__(self, command: int, nth: int) -> None:
        from netkeepalive._libc import libc

        self.real = libc()
        self.command = command
        self.left = nth

    def syscall(self, number: Any, cmd: Any, *args: Any) -> int:
        if cmd.value == self.command:
            self.left -= 1
            if self.left == 0:
                import ctypes

                ctypes.set_errno(errno.ENOMEM)
                return -1
        result: int = self.real.syscall(number, cmd, *args)
        return result


@pytest.mark.parametrize(
    ("command", "nth", "old_enforced"),
    [
        ("MAP_CREATE", 2, False),  # the counter map
        ("PROG_LOAD", 2, False),  # the enforcing program
        ("PROG_ATTACH", 2, False),  # the enforcing program, after the sock_ops one
        ("PROG_DETACH", 1, True),  # the old enforcing program: both new ones go again
    ],
)
def test_a_failing_enforce_attach_leaves_the_old_policy(
    cg: Cgroup,  # noqa: F811
    mocker: Any,
    command: str,
    nth: int,
    old_enforced: bool,
) -> None:
    """One step of an enforcing attach fails: the old policy stays, alone."""
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys

    old = cgroup.attach(cg.directory, idle=7000, enforce=old_enforced)
    before = len(os.listdir("/proc/self/fd"))
    mocker.patch.object(_bpfsys, "libc", return_value=FailingNth(getattr(_bpfsys, command), nth))
    with pytest.raises(cgroup.CgroupError) as caught:
        cgroup.attach(cg.directory, idle=4000, enforce=True)
    mocker.stopall()
    assert caught.value.errno == errno.ENOMEM
    assert f"bpf(BPF_{command})" in str(caught.value)
    assert len(os.listdir("/proc/self/fd")) == before
    enforcing = ["netkeepalive"] if old_enforced else []
    assert (cg.programs(), setsockopt_programs(cg)) == (["netkeepalive"], enforcing)
    assert cgroup.status(cg.name) == old
    report = write_options(cg, [["idle", TCP, socket.TCP_KEEPIDLE, 7200]])
    assert report == {"idle": 7 if old_enforced else 7200}
    if old_enforced:  # the cg fixture removes sock_ops programs only
        cgroup.detach(cg.name)


def test_enforce_must_be_a_bool(cg: Cgroup) -> None:  # noqa: F811
    from netkeepalive import cgroup

    with pytest.raises(TypeError, match="enforce: expected a bool"):
        cgroup.attach(cg.directory, idle=5000, enforce=1)  # type: ignore[arg-type]
    assert cg.programs() == []


class Before53:
    """``syscall`` of a kernel without cgroup/setsockopt programs (before Linux 5.3):
    ``BPF_PROG_QUERY`` of that hook and ``BPF_PROG_LOAD`` of that type fail with EINVAL."""

    def __init__(self) -> None:
        from netkeepalive._libc import libc

        self.real = libc()

    def syscall(self, number: Any, cmd: Any, attr: Any, *rest: Any) -> int:
        import ctypes
        import struct

        from netkeepalive._linux import _bpfsys

        first, second = struct.unpack_from("=II", attr, 0)
        if (cmd.value, second) == (_bpfsys.PROG_QUERY, _bpfsys.ATTACH_CGROUP_SETSOCKOPT) or (
            cmd.value,
            first,
        ) == (_bpfsys.PROG_LOAD, _bpfsys.PROG_TYPE_CGROUP_SOCKOPT):
            ctypes.set_errno(errno.EINVAL)
            return -1
        result: int = self.real.syscall(number, cmd, attr, *rest)
        return result


def test_a_kernel_without_the_hook_works_without_enforce(
    cg: Cgroup,  # noqa: F811
    mocker: Any,
) -> None:
    """Before 5.3: attach, status and detach as before; --enforce says what it needs."""
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys

    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, "5.2.21", real.version, real.machine))
    mocker.patch("os.uname", return_value=fake)
    mocker.patch.object(_bpfsys, "libc", return_value=Before53())
    plain = cgroup.Policy(True, 5000, None, None, None)
    assert cgroup.attach(cg.directory, idle=5000) == plain
    assert cgroup.status(cg.name) == plain
    with pytest.raises(cgroup.CgroupError) as caught:
        cgroup.attach(cg.directory, idle=4000, enforce=True)
    assert caught.value.errno == errno.EINVAL
    assert "which arrived in Linux 5.3" in str(caught.value)
    assert cgroup.status(cg.name) == plain
    assert cgroup.detach(cg.name) is True
    mocker.stopall()
    assert cg.programs() == []

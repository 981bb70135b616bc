"""``netkeepalive cgroup``: the root cgroup only when named, concurrent calls,
foreign programs, and reports that cannot be written (Linux, root).

No test here attaches anything to the root cgroup: :func:`no_root_attach`
refuses such an attach before the kernel sees it, so even a broken
``resolve`` cannot put a policy on the machine.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import termios
import time
from typing import Any, Iterator, List, Tuple

import pytest
import test_cgroup
from test_cgroup import Cgroup
from test_retrofit import ROOT, cli_command, run_cli

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cgroup sock_ops programs are Linux-only"
)

cg = test_cgroup.cg  # the fixture: a fresh cgroup, removed with all it holds


def sock_ops_ids(directory: str) -> List[int]:
    """The ids of every sock_ops program attached to the cgroup at *directory*, in run order."""
    from netkeepalive._linux import _bpfsys, _cgroupfs

    with _cgroupfs.opened(directory) as fd:
        return _bpfsys.prog_query(fd, _bpfsys.ATTACH_CGROUP_SOCK_OPS)[1]


@pytest.fixture
def no_root_attach(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The cgroup2 mount; attaching there fails the test instead of reaching the kernel."""
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys

    mount = os.path.realpath(cgroup.cgroup2_mount())
    root = os.stat(mount)
    real = _bpfsys.prog_attach
    before = sock_ops_ids(mount)

    def guarded(cgroup_fd: int, *args: Any) -> None:
        st = os.fstat(cgroup_fd)
        assert (st.st_dev, st.st_ino) != (root.st_dev, root.st_ino), "attach at the root"
        real(cgroup_fd, *args)

    monkeypatch.setattr(_bpfsys, "prog_attach", guarded)
    yield mount
    assert sock_ops_ids(mount) == before


# -- 1: the root cgroup only when it is written out ---------------------------


def implicit_roots(cg: Cgroup, mount: str) -> List[str]:
    return [
        "",
        ".",
        "./",
        "x/..",
        cg.name.lstrip("/") + "/..",
        cg.name + "/..",
        cg.directory + "/..",
        mount + "/.",
        mount + "/./",
    ]


def test_paths_that_only_resolve_to_the_root_are_refused(
    cg: Cgroup, no_root_attach: str, capsys: Any
) -> None:
    from netkeepalive import cgroup

    for path in implicit_roots(cg, no_root_attach):
        for call in (lambda p: cgroup.attach(p, idle=60000), cgroup.detach, cgroup.status):
            with pytest.raises(ValueError) as caught:
                call(path)
            message = str(caught.value)
            assert f"cgroup path {path!r} is the root cgroup" in message
            assert "every process on the machine" in message
            assert "write '/'" in message
        for action in ("attach", "detach", "status"):
            from netkeepalive import cli

            extra = ["--idle", "60000"] if action == "attach" else []
            assert cli.main(["cgroup", action, path, *extra]) == 2
            out, err = capsys.readouterr()
            assert out == ""
            [line] = err.splitlines()
            assert line.startswith(f"netkeepalive cgroup {action}: cgroup path {path!r} is the")
            assert "every process on the machine; to mean that, write '/'" in line


def test_an_empty_path_attaches_nothing_from_the_command_line(
    cg: Cgroup, no_root_attach: str
) -> None:
    """The reported case, through the installed command, with status and detach too."""
    for action in ("status", "detach"):
        result = run_cli("cgroup", action, "")
        assert (result.returncode, result.stdout) == (2, "")
        assert len(result.stderr.splitlines()) == 1
        assert "is the root cgroup" in result.stderr


def test_slash_and_the_mount_point_name_the_root(no_root_attach: str) -> None:
    from netkeepalive import cgroup

    mount = cgroup.cgroup2_mount()
    for path in ("/", mount, mount + "/"):
        assert cgroup.resolve(path) == (no_root_attach, "/")


def test_the_report_of_a_root_attach_says_it_covers_the_machine() -> None:
    from netkeepalive.cgroup import Policy
    from netkeepalive.cli import _cgroup as _cgroup_cli

    policy = Policy(True, 60000, None, None, None)
    text = _cgroup_cli.report([("/", policy)], False, attaching=True)
    assert text == (
        "/: keepalive on, idle 60000 ms "
        "(the root cgroup: this policy covers every process on the machine)\n"
    )
    [entry] = json.loads(_cgroup_cli.report([("/", policy)], True, attaching=True))
    assert entry["whole_machine"] is True
    elsewhere = _cgroup_cli.report([("/a", policy)], False, attaching=True)
    assert elsewhere == "/a: keepalive on, idle 60000 ms\n"
    assert "whole_machine" not in _cgroup_cli.report([("/", policy)], True)


# -- 3: programs recognised by what they are ----------------------------------


def attach_impostor(cg: Cgroup, like_ours: bool) -> int:
    """A foreign sock_ops program named ``netkeepalive``; with *like_ours*, it is our
    own keepalive program with a map of the same name and shape, but unmarked."""
    from netkeepalive._linux import _bpf, _bpfsys, _cgroupfs, _programs

    code = _bpf.return_one_program()
    if like_ours:
        map_fd = _programs.new_policy_map("netkeepalive", entries=2)
        cg.foreign.append(map_fd)
        _bpfsys.map_update(map_fd, _bpf.POLICY_KEY, _bpf.policy_value({"enabled": 1, "idle": 99}))
        code = _bpf.keepalive_program(map_fd)
    prog = _bpfsys.prog_load(_bpfsys.PROG_TYPE_SOCK_OPS, code, "netkeepalive")
    cg.foreign.append(prog)
    with _cgroupfs.opened(cg.directory) as fd:
        _bpfsys.prog_attach(fd, prog, _bpfsys.ATTACH_CGROUP_SOCK_OPS, _bpfsys.F_ALLOW_MULTI)
    return _bpfsys.prog_info(prog).prog_id


@pytest.mark.parametrize("like_ours", [False, True])
def test_a_foreign_program_named_netkeepalive_is_shown_and_left_alone(
    cg: Cgroup, listener: socket.socket, like_ours: bool
) -> None:
    from netkeepalive import cgroup

    impostor = attach_impostor(cg, like_ours)
    assert cgroup.status(cg.name) is None
    assert cgroup.foreign_programs(cg.name) == [(impostor, "netkeepalive")]
    shown = run_cli("cgroup", "status", cg.name)
    assert (shown.returncode, shown.stderr) == (0, "")
    assert shown.stdout == (
        f"{cg.name}: no policy\n"
        f"{cg.name}: also attached, not ours (left alone): id {impostor} named 'netkeepalive'\n"
    )
    every = run_cli("cgroup", "status", "--json")
    assert every.returncode == 0, every.stderr
    assert cg.name not in [entry["cgroup"] for entry in json.loads(every.stdout)]
    test_cgroup.attach(cg.name, "--idle", 4000)
    ids = sock_ops_ids(cg.directory)
    assert ids[0] == impostor
    assert len(ids) == 2
    assert cgroup.status(cg.name) == cgroup.Policy(True, 4000, None, None, None)
    document = json.loads(run_cli("cgroup", "status", cg.name, "--json").stdout)
    assert document[0]["foreign_programs"] == [{"id": impostor, "name": "netkeepalive"}]
    again = run_cli("cgroup", "attach", cg.name, "--idle", 5000)
    assert again.returncode == 0, again.stderr
    assert sock_ops_ids(cg.directory)[0] == impostor
    assert run_cli("cgroup", "detach", cg.name).stdout == f"{cg.name}: policy removed\n"
    assert sock_ops_ids(cg.directory) == [impostor]
    assert run_cli("cgroup", "detach", cg.name).stdout == f"{cg.name}: had no policy\n"
    assert sock_ops_ids(cg.directory) == [impostor]


def test_program_kind_names_the_enforcing_program(cg: Cgroup) -> None:
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys, _cgroupfs

    cgroup.attach(cg.name, idle=4000, enforce=True)
    with _cgroupfs.opened(cg.directory) as cgroup_fd:
        _, ids = _bpfsys.prog_query(cgroup_fd, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)
    kinds = []
    for prog_id in ids:
        fd = _bpfsys.prog_get_fd_by_id(prog_id)
        try:
            kinds.append(cgroup.program_kind(_bpfsys.prog_info(fd)))
        finally:
            os.close(fd)
    assert kinds == ["enforce"]
    assert cgroup.detach(cg.name) is True
    with _cgroupfs.opened(cg.directory) as cgroup_fd:
        assert _bpfsys.prog_query(cgroup_fd, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)[1] == []


def test_program_kind_of_an_attached_program(cg: Cgroup) -> None:
    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys

    impostor = attach_impostor(cg, like_ours=True)
    test_cgroup.attach(cg.name, "--idle", 4000)
    kinds = {}
    for prog_id in sock_ops_ids(cg.directory):
        fd = _bpfsys.prog_get_fd_by_id(prog_id)
        try:
            kinds[prog_id] = cgroup.program_kind(_bpfsys.prog_info(fd))
        finally:
            os.close(fd)
    assert kinds.pop(impostor) is None
    assert list(kinds.values()) == ["keepalive"]


# -- 2: concurrent attach and detach -----------------------------------------


def _racer(directory: str, index: int, rounds: int, start: Any, done: Any, errors: Any) -> None:
    """One of four processes: each round, wait for the others, attach or detach, report."""
    from netkeepalive import cgroup

    status = 0
    try:
        for round_ in range(rounds):
            start.wait()
            try:
                if (round_ + index) % 4 == 3 and round_ % 2:
                    cgroup.detach(directory)
                else:
                    cgroup.attach(directory, idle=1000 * (index + 2))
            except Exception as exc:
                errors.put(f"round {round_} racer {index}: {exc!r}")
            done.wait()
    except BaseException:
        status = 1
    os._exit(status)


def test_racing_attach_and_detach_leave_at_most_one_program(
    cg: Cgroup, listener: socket.socket
) -> None:
    """Four processes attach (and some rounds detach) at the same moment, round after
    round; after every round the kernel lists zero or one program of ours there."""
    from netkeepalive import cgroup

    rounds = 40
    context = multiprocessing.get_context("fork")
    start, done = context.Barrier(5, timeout=120), context.Barrier(5, timeout=120)
    errors = context.Queue()
    racers = [
        context.Process(target=_racer, args=(cg.directory, i, rounds, start, done, errors))
        for i in range(4)
    ]
    for racer in racers:
        racer.start()
    counts = []
    try:
        for _ in range(rounds):
            start.wait()
            done.wait()
            counts.append(len(sock_ops_ids(cg.directory)))
    finally:
        for racer in racers:
            racer.join(timeout=120)
    assert [racer.exitcode for racer in racers] == [0, 0, 0, 0]
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert max(counts) == 1, counts
    # What status says is what a new connection gets.
    policy = cgroup.status(cg.name)
    report = cg.child().ask(f"connect {listener.getsockname()[1]}")
    if policy is None:
        assert report["enabled"] == 0
    else:
        assert (report["enabled"], report["idle"] * 1000) == (1, policy.idle)


# -- 4: reports that cannot be written ---------------------------------------


def _one_line(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    return line


def test_attach_and_detach_to_a_full_device_keep_the_change(cg: Cgroup) -> None:
    from netkeepalive import cgroup

    with open("/dev/full", "w") as full:
        attached = run_cli("cgroup", "attach", cg.name, "--idle", 5000, stdout=full)
    assert _one_line(attached) == (
        "netkeepalive cgroup attach: cannot write the output: [Errno 28] No space left on "
        f"device; the policy is attached to cgroup {cg.name} all the same; only the report failed"
    )
    assert cgroup.status(cg.name) == cgroup.Policy(True, 5000, None, None, None)
    with open("/dev/full", "w") as full:
        detached = run_cli("cgroup", "detach", cg.name, stdout=full)
    assert _one_line(detached).endswith(
        f"the policy is detached from cgroup {cg.name} all the same; only the report failed"
    )
    assert cgroup.status(cg.name) is None


CLOSED_STDOUT = ["sh", "-c", 'exec "$@" >&-', "sh"]


@pytest.mark.parametrize("action", ["attach", "status"])
def test_json_to_a_closed_stdout_is_one_line(cg: Cgroup, action: str) -> None:
    from netkeepalive import cgroup

    extra = ["--idle", 5000] if action == "attach" else []
    result = run_cli("cgroup", action, cg.name, "--json", *extra, prefix=CLOSED_STDOUT)
    line = _one_line(result)
    assert line.startswith(
        f"netkeepalive cgroup {action}: cannot write the output: standard output is closed"
    )
    if action == "attach":
        assert line.endswith("all the same; only the report failed")
        assert cgroup.status(cg.name) == cgroup.Policy(True, 5000, None, None, None)


def _unbuffered(args: List[object], stdout: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [*cli_command(), *(str(a) for a in args)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
    )


def _pipe_closing_midway(args: List[object]) -> Tuple[int, str]:
    """Run the command unbuffered into a pipe whose reader leaves after the first bytes.

    The pipe is shrunk to two pages and the first is filled, so the
    command's first write (longer than a page, so not atomic) stops after
    one page; once the pipe is full the read end is closed, as ``| head
    -c 10`` does, and the write returns what it wrote.
    """
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 8192)
    room = fcntl.fcntl(write_end, getattr(fcntl, "F_GETPIPE_SZ", 1032))
    os.write(write_end, b"x" * (room - 4096))
    proc = _unbuffered(args, write_end)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            waiting = fcntl.ioctl(read_end, termios.FIONREAD, b"\0\0\0\0")
            if struct.unpack("i", waiting)[0] >= room:
                break  # full: the command wrote a page and waits to write more
            time.sleep(0.01)
        assert proc.poll() is None, "the command ended before the pipe was full"
    finally:
        os.close(read_end)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _pipe_closed_before(args: List[object]) -> Tuple[int, str]:
    """Run the command unbuffered into a pipe whose reader has left already."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = _unbuffered(args, write_end)
    finally:
        os.close(write_end)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("command", [["show"], ["set", "--idle", "9000", "--json"]])
def test_a_pipe_closed_midway_is_141_unbuffered(
    cg: Cgroup, listener: socket.socket, command: List[str]
) -> None:
    """``show PID | head -c 10`` under PYTHONUNBUFFERED=1, with more than a page to print."""
    child = cg.child()
    for _ in range(80):
        child.ask(f"connect {listener.getsockname()[1]}")
    status, err = _pipe_closing_midway([command[0], child.proc.pid, *command[1:]])
    assert status == 141
    if command[0] == "show":
        assert err == ""
    else:  # the change stays, and stderr says so in one line
        assert err.splitlines() == [
            "netkeepalive set: the output pipe was closed; the change was applied to "
            f"80 socket(s) of pid {child.proc.pid}"
        ]


def test_a_closed_pipe_is_141_for_every_command_unbuffered(cg: Cgroup) -> None:
    stays = "netkeepalive cgroup {}: the output pipe was closed; the policy is {} cgroup {} "
    for args, err in (
        (
            ["cgroup", "attach", cg.name, "--idle", 5000, "--json"],
            stays.format("attach", "attached to", cg.name)
            + "all the same; only the report failed\n",
        ),
        (["cgroup", "status", cg.name, "--json"], ""),
        (["cgroup", "status"], ""),
        (
            ["cgroup", "detach", cg.name],
            stays.format("detach", "detached from", cg.name)
            + "all the same; only the report failed\n",
        ),
        (["demo", "--idle", 1000, "--interval", 1000, "--probes", 1], ""),
    ):
        assert _pipe_closed_before(args) == (141, err), args


# -- 9: an option attach does not take ------------------------------------------


@pytest.mark.parametrize("args", [["x", "--enable"], ["--enable"]])
def test_an_unknown_option_gets_attachs_usage(args: List[str]) -> None:
    result = run_cli("cgroup", "attach", *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("usage: netkeepalive cgroup attach [-h] ")
    assert result.stderr.splitlines()[-1].startswith("netkeepalive cgroup attach: error: ")


def test_a_cgroup_named_with_control_characters_is_escaped_in_text(cg: Cgroup) -> None:
    """A name cannot forge what a terminal shows: control characters are escaped.

    The kernel refuses a newline in a cgroup's name (``cgroup_mkdir``), but
    takes a carriage return and escape sequences, which would let a name
    overwrite its own line on a terminal.
    """
    sub = cg.subgroup("x\rforged: no policy\x1b[K")
    shown = f"{cg.name}/x\\rforged: no policy\\x1b[K"
    attached = run_cli("cgroup", "attach", sub.directory, "--idle", "60000")
    assert attached.returncode == 0, attached.stderr
    assert attached.stdout.splitlines() == [f"{shown}: keepalive on, idle 60000 ms"]
    status = run_cli("cgroup", "status", sub.directory)
    assert status.stdout.splitlines() == [f"{shown}: keepalive on, idle 60000 ms"]
    listing = run_cli("cgroup", "status")
    assert "\r" not in listing.stdout
    assert "\x1b" not in listing.stdout
    assert f"{shown}: keepalive on, idle 60000 ms" in listing.stdout.splitlines()
    as_json = json.loads(run_cli("cgroup", "status", sub.directory, "--json").stdout)
    assert as_json[0]["cgroup"] == sub.name  # JSON keeps the name as it is
    with open("/dev/full", "w") as device:
        full = run_cli("cgroup", "attach", sub.directory, "--idle", "60000", stdout=device)
    assert full.returncode == 1
    assert "\\r" in full.stderr
    assert "\r" not in full.stderr
    assert len(full.stderr.splitlines()) == 1, full.stderr
    detached = run_cli("cgroup", "detach", sub.directory)
    assert detached.stdout.splitlines() == [f"{shown}: policy removed"]

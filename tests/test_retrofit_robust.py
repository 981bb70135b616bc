"""``netkeepalive show``/``set`` where real servers make it hard (Linux).

Sockets that close while the command runs, many processes in one network
namespace, a process that moved to another network namespace, output that
cannot be written, system calls refused by a seccomp filter, and process
ids given twice or naming a thread.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from test_retrofit import (
    Child,
    needs_pidfd,
    needs_root,
    open_fds,
    run_cli,
    settings_only,
)

from netkeepalive._linux import _procfs

BUSY = Path(__file__).parent / "helpers" / "busy_child.py"
SECCOMP = Path(__file__).parent / "helpers" / "seccomp_run.py"

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd_getfd is Linux-only"),
    needs_pidfd,
]


def _after_listing(mocker: Any, action: Callable[[], None]) -> None:
    """Run *action* right after the command has listed the target's sockets.

    Only the moment is forced: *action* closes or replaces real sockets of
    the target process, as a busy server does at any time.
    """
    real = _procfs.tcp_sockets

    def listing(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        action()
        return found

    mocker.patch.object(_procfs, "tcp_sockets", side_effect=listing)


# -- 5: sockets that close between listing and borrowing --------------------


def test_set_carries_on_when_sockets_close_after_listing(
    child: Child, main: Callable[[List[str]], int], capsys: Any, mocker: Any
) -> None:
    """A socket that closed is reported as gone; one whose number was reused is left alone."""
    before = child.settings()
    closed, replaced, *rest = sorted(fd for fd in before if before[fd]["enabled"])
    news: Dict[str, Any] = {}

    def churn() -> None:
        child.command(f"close {closed}")
        news.update(child.command(f"replace {replaced}"))

    _after_listing(mocker, churn)
    fds = open_fds()
    status = main(["set", str(child.pid), "--idle", "9000", "--json"])
    out, err = capsys.readouterr()
    assert open_fds() == fds
    assert status == 0, err
    document = json.loads(out)
    assert document["errors"] == []
    assert {s["fd"] for s in document["gone"]} == {closed, replaced}
    changed = {s["fd"]: s for s in document["sockets"]}
    assert set(changed) == set(before) - {closed, replaced}
    assert all(s["error"] is None and s["after"]["idle_ms"] == 9000 for s in changed.values())
    assert f"fd {closed}: closed by the process" in err
    assert f"fd {replaced}: closed by the process" in err
    after = child.settings()
    assert closed not in after
    # The new socket at the reused number was never touched: default idle time.
    default_idle = int(Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text()) * 1000
    assert os.stat(f"/proc/{child.pid}/fd/{replaced}").st_ino == news["inode"]
    assert after[replaced]["idle_ms"] == default_idle
    for fd in rest:
        assert after[fd]["idle_ms"] == 9000
        assert settings_only(after[fd]) == dict(settings_only(before[fd]), idle_ms=9000)


def test_show_does_not_fail_when_a_socket_closes(
    child: Child, main: Callable[[List[str]], int], capsys: Any, mocker: Any
) -> None:
    before = child.settings()
    closed = sorted(before)[1]
    _after_listing(mocker, lambda: child.command(f"close {closed}"))
    status = main(["show", str(child.pid), "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    document = json.loads(out)
    assert [s["fd"] for s in document["gone"]] == [closed]
    shown = {s["fd"]: s["keepalive"] for s in document["sockets"]}
    assert shown == {fd: v for fd, v in child.settings().items()}
    assert closed not in shown


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(BUSY), "300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())
        yield proc
    finally:
        assert proc.stdin is not None
        try:
            proc.stdin.write("quit\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()


def test_set_on_a_busy_server(busy: subprocess.Popen[str]) -> None:
    """About 1000 connections a second closing among 600 sockets: every run exits 0."""
    last: Dict[str, Any] = {}
    for idle in (9000, 10000, 11000):
        result = run_cli("set", busy.pid, "--idle", idle, "--json")
        assert result.returncode == 0, result.stderr
        last = json.loads(result.stdout)
        assert last["errors"] == []
        assert all(s["error"] is None for s in last["sockets"])
        assert all(s["after"]["idle_ms"] == idle for s in last["sockets"])
    assert busy.stdin is not None
    assert busy.stdout is not None
    busy.stdin.write("stop\n")
    busy.stdin.flush()
    held = json.loads(busy.stdout.readline())
    # Every socket the last run changed that is still open holds the value,
    # read by the process itself.
    still = [s for s in last["sockets"] if held.get(str(s["fd"]), {}).get("inode") == s["inode"]]
    assert len(still) >= 10  # most, unless this machine is very slow
    assert all(held[str(s["fd"])]["idle_s"] == 11 for s in still)


# -- 6: one read of each network namespace's tables ---------------------------


@needs_root
def test_show_all_reads_each_namespace_table_once(
    main: Callable[[List[str]], int], capsys: Any, mocker: Any
) -> None:
    """Three processes in this namespace, one ``show``: its tables are read once."""
    children = [Child() for _ in range(3)]
    try:
        read = mocker.spy(_procfs, "_read_tables")
        main(["show", "--json"])
        document = json.loads(capsys.readouterr().out)
        shown = {s["pid"] for s in document["sockets"]}
        assert {c.pid for c in children} <= shown
        namespaces: List[int] = []
        for call in read.call_args_list:
            pid = call.args[0]
            try:
                namespaces.append(os.stat(f"/proc/{pid}/ns/net").st_ino)
            except OSError:  # exited since, or not ours to look at
                continue
        mine = os.stat("/proc/self/ns/net").st_ino
        assert namespaces.count(mine) == 1
        assert len(namespaces) == len(set(namespaces))
    finally:
        for c in children:
            c.close()


def test_processes_in_one_namespace_share_one_parsed_table(child: Child) -> None:
    tables = _procfs.Tables()
    mine = tables.for_pid(os.getpid())
    assert tables.for_pid(child.pid) is mine
    assert tables.reads == 1
    inodes = {os.stat(f"/proc/{child.pid}/fd/{fd}").st_ino for fd in child.tcp}
    listed = {s.inode for s in _procfs.tcp_sockets(child.pid, tables=tables)}
    assert listed == inodes
    assert tables.reads == 1


# -- 7: a process that moved to another network namespace ---------------------


@needs_root
def test_show_a_process_that_moved_to_another_namespace() -> None:
    """Its sockets are not in its namespace's tables: read from the descriptors."""
    target = Child(args=["--move-netns"])
    try:
        mine = os.stat("/proc/self/ns/net").st_ino
        assert os.stat(f"/proc/{target.pid}/ns/net").st_ino != mine
        result = run_cli("show", target.pid, "--json")
        assert result.returncode == 0, result.stderr
        shown = {s["fd"]: s for s in json.loads(result.stdout)["sockets"]}
        assert set(shown) == set(target.tcp)
        states = {}
        for fd, sock in shown.items():
            assert (sock["local"], sock["remote"]) == (
                target.tcp[fd]["local"],
                target.tcp[fd]["remote"],
            )
            states[fd] = sock["state"]
        [unconnected] = [fd for fd, v in target.tcp.items() if v["local"] == "-"]
        assert states.pop(unconnected) == "CLOSE"
        assert sorted(set(states.values())) == ["ESTABLISHED", "LISTEN"]
        assert list(states.values()).count("LISTEN") == 1
        table = run_cli("show", target.pid)
        assert table.returncode == 0
        rows = [line.split() for line in table.stdout.splitlines()[1:]]
        assert sorted(r[2] for r in rows).count("CLOSE") == 1
    finally:
        target.close()


# -- 8: output that cannot be written -------------------------------------------


@pytest.mark.parametrize("command", [["show", "--json"], ["set", "--idle", "9000", "--json"]])
def test_closed_pipe_is_141_and_names_only_a_change(child: Child, command: List[str]) -> None:
    """A closed pipe ends with 141; quietly for ``show``, with one line saying what
    stays for ``set``, whose change was made although its report was not read."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -c 10` that has finished
    try:
        args: List[object] = [command[0], child.pid, *command[1:]]
        result = run_cli(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 141  # 128 + SIGPIPE, as a shell reports for other tools
    if command[0] == "set":
        settings = child.settings()
        assert settings
        assert all(v["idle_ms"] == 9000 for v in settings.values())
        assert result.stderr.splitlines() == [
            "netkeepalive set: the output pipe was closed; the change was applied to "
            f"{len(settings)} socket(s) of pid {child.pid}"
        ]
    else:
        assert result.stderr == ""


def test_full_device_gives_one_line(child: Child) -> None:
    with open("/dev/full", "w") as full:
        result = run_cli("show", child.pid, stdout=full)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "netkeepalive show: cannot write the output: [Errno 28] No space left on device"
    ]


@pytest.mark.parametrize("where", ["closed", "/dev/full"])
def test_set_says_the_change_was_applied_when_output_fails(child: Child, where: str) -> None:
    args = ["set", child.pid, "--idle", 9000, "--json"]
    if where == "closed":
        result = run_cli(*args, prefix=["sh", "-c", 'exec "$@" >&-', "sh"])
    else:
        with open(where, "w") as full:
            result = run_cli(*args, stdout=full)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("netkeepalive set: cannot write the output: ")
    assert line.endswith(f"the change was applied to {len(child.tcp)} socket(s) of pid {child.pid}")
    assert all(v["idle_ms"] == 9000 for v in child.settings().values())


# -- 9: system calls refused by a seccomp filter --------------------------------


def _filtered(rules: List[str], *args: object) -> subprocess.CompletedProcess[str]:
    """The command run under a seccomp filter refusing *rules* (``call=ERRNO``)."""
    if platform.machine() not in ("x86_64", "aarch64", "riscv64"):
        pytest.skip(f"no seccomp test filter for {platform.machine()}")
    prefix = [sys.executable, str(SECCOMP), *rules, "--"]
    result = run_cli(*args, prefix=prefix)
    if result.returncode == 3:  # never an exit status of netkeepalive
        pytest.skip(result.stderr.strip())
    return result


@needs_root
def test_pidfd_getfd_blocked_with_cap_sys_ptrace(child: Child) -> None:
    """Docker's default profile: pidfd_getfd refused with EPERM although root may ptrace."""
    result = _filtered(["pidfd_getfd=EPERM"], "show", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["sockets"] == []
    # Said once for every process it refused (processes this machine keeps
    # from root for other reasons are summed up on a line of their own).
    [line] = [line for line in result.stderr.splitlines() if "pidfd_getfd" in line]
    assert "pidfd_getfd was refused (EPERM) although you have CAP_SYS_PTRACE" in line
    assert "seccomp" in line
    assert "same user id" not in result.stderr

    before = child.settings()
    result = _filtered(["pidfd_getfd=EPERM"], "set", child.pid, "--idle", 9000)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "pidfd_getfd was refused (EPERM) although you have CAP_SYS_PTRACE" in line
    assert line.endswith("nothing was changed")
    assert child.settings() == before


def test_pidfd_open_blocked_is_said_once(child: Child) -> None:
    result = _filtered(["pidfd_open=EPERM"], "show", child.pid, os.getpid())
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pidfd_open was refused" in lines[0]
    assert "seccomp" in lines[0]


@needs_root
def test_pidfd_open_blocked_listing_all_is_said_once() -> None:
    result = _filtered(["pidfd_open=EPERM"], "show")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("call", ["pidfd_getfd", "pidfd_open"])
def test_enosys_from_a_filter_on_a_new_kernel(call: str) -> None:
    release = tuple(int(n) for n in re.findall(r"\d+", platform.release())[:2])
    if release < (5, 6):
        pytest.skip("this kernel really lacks pidfd_getfd")
    result = _filtered([f"{call}=ENOSYS"], "show", os.getpid())
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "needs Linux 5.6 or later" not in line
    assert f"{call} returned ENOSYS although this kernel" in line
    assert "seccomp" in line


# -- 10: duplicate process ids, thread ids ---------------------------------------


def test_show_same_pid_twice_lists_each_socket_once(child: Child) -> None:
    result = run_cli("show", child.pid, child.pid, "--json")
    assert result.returncode == 0, result.stderr
    fds = [s["fd"] for s in json.loads(result.stdout)["sockets"]]
    assert sorted(fds) == sorted(child.tcp)


@pytest.mark.parametrize("command", [["show"], ["set", "--idle", "9000"]])
def test_thread_id_is_named_as_a_thread(
    main: Callable[[List[str]], int], capsys: Any, command: List[str]
) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        tid = thread.native_id
        assert tid is not None
        assert tid != os.getpid()
        status = main([command[0], str(tid), *command[1:]])
    finally:
        stop.set()
        thread.join()
    err = capsys.readouterr().err
    assert status == 1
    assert f"pid {tid}: a thread of process {os.getpid()}" in err
    assert "Errno" not in err

"""``netkeepalive set PID``: a keepalive time or count turns keepalive on.

Keepalive times and counts do nothing on a socket whose ``SO_KEEPALIVE`` is
off, so ``set`` turns it on whenever ``--idle``, ``--interval``,
``--probes`` or ``--detect-within`` is given, unless ``--no-enable``, and
says so.  Checked on the real sockets of a child process, read back by the
child with ``getsockopt``.  Also: a ``pidfd_getfd`` refused with ``EINVAL``
by a seccomp filter is one line, not a table of unknown rows.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any, List

import pytest
from test_retrofit import Child, needs_pidfd, run_cli, settings_only

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd_getfd is Linux-only"),
    needs_pidfd,
]

SECCOMP = Path(__file__).parent / "helpers" / "seccomp_run.py"


def _off(child: Child) -> List[int]:
    off = [fd for fd, v in child.settings().items() if not v["enabled"]]
    assert off, "the child keeps keepalive off on some sockets"
    return off


@pytest.mark.parametrize(
    "option", [["--idle", "20000"], ["--probes", "4"], ["--detect-within", "30000"]]
)
def test_a_keepalive_time_or_count_turns_keepalive_on(child: Child, option: List[str]) -> None:
    target = _off(child)[0]
    result = run_cli("set", child.pid, "--fd", target, *option)
    assert result.returncode == 0, result.stderr
    assert child.settings()[target]["enabled"] is True
    [line] = result.stderr.splitlines()
    assert line == (
        f"netkeepalive set: keepalive turned on (SO_KEEPALIVE=1) on 1 socket(s) of pid "
        f"{child.pid} where it was off, because {option[0]} was given; --no-enable leaves "
        "it as it is"
    )


def test_no_enable_leaves_keepalive_off(child: Child) -> None:
    target = _off(child)[0]
    before = child.settings()[target]
    result = run_cli("set", child.pid, "--fd", target, "--idle", "20000", "--no-enable")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert settings_only(child.settings()[target]) == dict(settings_only(before), idle_ms=20000)


def test_a_user_timeout_alone_leaves_keepalive_as_it_is(child: Child) -> None:
    before = child.settings()
    result = run_cli("set", child.pid, "--user-timeout", "7000")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    after = child.settings()
    for fd in before:
        assert after[fd]["enabled"] == before[fd]["enabled"]
        assert after[fd]["user_timeout_ms"] == 7000


def test_already_on_is_not_reported(child: Child) -> None:
    on = [fd for fd, v in child.settings().items() if v["enabled"]]
    result = run_cli("set", child.pid, "--fd", on[0], "--idle", "20000")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("args", [["--no-enable"], ["--enable", "--no-enable"]])
def test_no_enable_alone_or_with_enable_is_refused(child: Child, args: List[str]) -> None:
    result = run_cli("set", child.pid, *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("netkeepalive set: error: ")


def test_pidfd_getfd_einval_from_a_filter_is_one_line(child: Any) -> None:
    if platform.machine() not in ("x86_64", "aarch64", "riscv64"):
        pytest.skip(f"no seccomp test filter for {platform.machine()}")
    before = child.settings()
    prefix = [sys.executable, str(SECCOMP), "pidfd_getfd=EINVAL", "--"]
    result = run_cli("set", child.pid, "--idle", "9000", prefix=prefix)
    if result.returncode == 3:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"netkeepalive set: pid {child.pid}: pidfd_getfd(pid {child.pid}, fd ")
    assert "[Errno 22]" in line
    assert "seccomp" in line
    assert line.endswith("; nothing was changed")
    assert child.settings() == before

"""All or nothing: a refused option undoes every option the same call wrote.

On the real kernel, a seccomp filter (tests/seccomp_run.py) refuses
``setsockopt`` of one option (``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``,
``SO_KEEPALIVE``, ...) in a child process that calls each entry point
(tests/atomic_child.py); every option is read back with the standard
library's ``getsockopt``.  ``netkeepalive set PID`` runs under the same
filter against another process's sockets.  On the simulated kernels:
illumos' interval beyond its 60 s retransmit maximum, an option whose
previous value cannot be read back (NetBSD before 8) or was never set
(illumos), and a write-back that is refused as well.
"""

from __future__ import annotations

import errno
import json
import platform
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_retrofit import needs_pidfd

import netkeepalive

HERE = Path(__file__).parent
SECCOMP = HERE / "helpers" / "seccomp_run.py"
CHILD = HERE / "helpers" / "atomic_child.py"
TCP = socket.IPPROTO_TCP
FD = 7

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

#: C name -> (level, option number) on Linux.
LINUX_OPTIONS = {
    "TCP_KEEPIDLE": (TCP, 4),
    "TCP_KEEPINTVL": (TCP, 5),
    "TCP_KEEPCNT": (TCP, 6),
    "TCP_USER_TIMEOUT": (TCP, 18),
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
}
#: What each case of atomic_child.py writes.
WRITES = {
    "configure-fast": set(LINUX_OPTIONS),
    "configure-general": set(LINUX_OPTIONS),
    "configure-only-lower": set(LINUX_OPTIONS),
    "configure-disable": {"TCP_KEEPIDLE", "SO_KEEPALIVE"},
    "set_keepalive": {"TCP_KEEPIDLE", "SO_KEEPALIVE"},
    "set_keepalive-general": {"TCP_KEEPIDLE", "SO_KEEPALIVE"},
}


def _filter_prefix(refused: str, err: str = "EPERM") -> List[str]:
    if platform.machine() not in ("x86_64", "aarch64", "riscv64"):
        pytest.skip(f"no seccomp test filter for {platform.machine()}")
    level, option = LINUX_OPTIONS[refused]
    return [sys.executable, str(SECCOMP), f"setsockopt:{level}:{option}={err}", "--"]


def _run(prefix: List[str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*prefix, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(HERE.parent), "PATH": "/usr/bin:/bin"},
    )
    if result.returncode == 3 and "seccomp" in result.stderr:
        pytest.skip(result.stderr.strip())
    return result


@linux_only
@pytest.mark.parametrize(
    "refused", ["TCP_KEEPIDLE", "TCP_KEEPINTVL", "SO_KEEPALIVE", "TCP_KEEPCNT", "TCP_USER_TIMEOUT"]
)
def test_a_refused_option_leaves_every_option_as_before(refused: str) -> None:
    result = _run(_filter_prefix(refused), sys.executable, str(CHILD))
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["case"] for r in reports] == list(WRITES)
    for report in reports:
        case, error = report["case"], report["error"]
        if refused not in WRITES[case]:
            assert error is None, (case, error)
            continue
        assert error is not None, case
        assert error["is_oserror"], (case, error)
        assert error["type"] == "SocketOptionError"
        assert error["errno"] == errno.EPERM
        call = "set_keepalive" if case.startswith("set_keepalive") else "configure"
        assert error["message"].startswith(f"{call}: setsockopt({refused}): [Errno 1] "), error
        assert error["message"].endswith("; nothing was changed"), error
        assert report["after"] == report["before"], case


@pytest.fixture
def target() -> Any:
    from test_retrofit import Child

    child = Child()
    try:
        yield child
    finally:
        child.close()


@linux_only
@needs_pidfd
@pytest.mark.parametrize("refused", ["TCP_KEEPIDLE", "TCP_KEEPINTVL", "SO_KEEPALIVE"])
def test_set_pid_is_all_or_nothing_per_socket(target: Any, refused: str) -> None:
    before = target.settings()
    prefix = _filter_prefix(refused)
    result = _run(
        prefix,
        sys.executable,
        "-m",
        "netkeepalive",
        "set",
        str(target.pid),
        "--idle",
        "20000",
        "--interval",
        "5000",
        "--probes",
        "4",
        "--enable",
    )
    assert result.returncode == 1, result.stderr
    assert target.settings() == before
    lines = result.stderr.splitlines()
    # One line per socket, naming it, the refused option and the outcome.
    assert len(lines) == len(target.tcp), result.stderr
    for fd in target.tcp:
        [line] = [line for line in lines if f" fd {fd} (" in line]
        assert f"configure: setsockopt({refused}): [Errno 1]" in line
        assert line.endswith("; nothing was changed")


# -- simulated kernels ----------------------------------------------------------


def illumos(simulate: Callable[..., Any]) -> Any:
    return simulate("sunos5", release="5.11", version="omnios-r151046-2b8a7ab")


def test_illumos_interval_beyond_60s_restores_the_probe_count(
    simulate: Callable[..., Any],
) -> None:
    sim = illumos(simulate)
    netkeepalive.set_keepalive_probes(FD, 9)
    before = dict(sim.kernel.values)
    with pytest.raises(OSError) as info:
        netkeepalive.configure(FD, probes=5, interval=120_000)
    assert info.value.errno == errno.EINVAL
    assert str(info.value).startswith("configure: setsockopt(TCP_KEEPINTVL): [Errno 22]")
    assert str(info.value).endswith("; nothing was changed")
    assert sim.kernel.values == before
    assert netkeepalive.get_keepalive_probes(FD) == 9


def test_illumos_unset_probe_count_is_named_as_left_changed(
    simulate: Callable[..., Any],
) -> None:
    """An unset TCP_KEEPCNT reads back as 0, which illumos refuses: it cannot be put back."""
    sim = illumos(simulate)
    with pytest.raises(OSError) as info:
        netkeepalive.configure(FD, probes=5, interval=120_000)
    assert info.value.errno == errno.EINVAL
    message = str(info.value)
    assert message.startswith("configure: setsockopt(TCP_KEEPINTVL): [Errno 22]")
    # illumos derives the unset interval from the probe count (tcp_opt_set):
    # that side effect cannot be written back either, and is named too.
    assert message.endswith(
        "; TCP_KEEPCNT is left at 5 (it was never set on this socket, and an unset "
        "TCP_KEEPCNT cannot be written back); TCP_KEEPINTVL is left at 60 s, derived "
        "by the kernel from an earlier write (it was never set on this socket, and an unset "
        "TCP_KEEPINTVL cannot be written back); everything else is as before"
    )
    assert {k[1:]: v for k, v in sim.kernel.values.items()} == {(TCP, 35): 5, (TCP, 36): 60}


def test_netbsd_7_names_the_option_it_cannot_read_back(simulate: Callable[..., Any]) -> None:
    sim = simulate("netbsd7", release="7.2", version="NetBSD 7.2 (GENERIC)")
    sim.kernel.failures[("setsockopt", TCP, 5)] = errno.EPERM  # TCP_KEEPINTVL
    with pytest.raises(OSError) as info:
        netkeepalive.configure(FD, idle=10_000, interval=3_000, probes=5)
    assert info.value.errno == errno.EPERM
    assert str(info.value).endswith(
        "; TCP_KEEPCNT is left at 5 (this system cannot read TCP_KEEPCNT back, so its "
        "previous value is unknown); everything else is as before"
    )
    assert netkeepalive.get_keepalive(FD) is False


@pytest.mark.parametrize("probes", [5, 5.0], ids=["fast", "general"])
def test_a_refused_write_back_is_named(simulate: Callable[..., Any], probes: Any) -> None:
    sim = simulate("linux", release="6.8.0")
    sim.kernel.values[FD, TCP, 6] = 9
    sim.kernel.accepts[TCP, 6] = lambda n: n != 9  # a tunable changed meanwhile
    sim.kernel.failures[("setsockopt", TCP, 5)] = errno.EPERM
    kwargs: Dict[str, Any] = {"probes": 5, "interval": 3_000}
    if probes == 5.0:
        kwargs["interval"] = timedelta(seconds=3)
    with pytest.raises(OSError) as info:
        netkeepalive.configure(FD, **kwargs)
    assert info.value.errno == errno.EPERM
    assert str(info.value).endswith(
        "; TCP_KEEPCNT is left at 5 (writing back 9 was refused: Invalid argument); "
        "everything else is as before"
    )


KNOBS = {"user_timeout": 18, "probes": 6, "interval": 5, "idle": 4}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    given_knobs=st.sets(st.sampled_from(sorted(KNOBS)), min_size=1),
    refused=st.sampled_from([*KNOBS, "enable"]),
    enable=st.booleans(),
    general=st.booleans(),
    start=st.fixed_dictionaries(
        {
            "enable": st.integers(0, 1),
            "idle": st.integers(1, 9),
            "interval": st.integers(1, 9),
            "probes": st.integers(1, 9),
            "user_timeout": st.integers(0, 9),
        }
    ),
)
def test_any_refusal_leaves_the_simulated_kernel_as_before(
    simulate: Callable[..., Any],
    given_knobs: Any,
    refused: str,
    enable: bool,
    general: bool,
    start: Dict[str, int],
) -> None:
    sim = simulate("linux", release="6.8.0")  # a socket with every option set
    sim.kernel.values.update(
        {
            (FD, socket.SOL_SOCKET, socket.SO_KEEPALIVE): start["enable"],
            (FD, TCP, 4): start["idle"],
            (FD, TCP, 5): start["interval"],
            (FD, TCP, 6): start["probes"],
            (FD, TCP, 18): start["user_timeout"],
        }
    )
    level, option = (
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        if refused == "enable"
        else (
            TCP,
            KNOBS[refused],
        )
    )
    sim.kernel.failures[("setsockopt", level, option)] = errno.EACCES
    values: Dict[str, Any] = {"user_timeout": 9_000, "probes": 4, "interval": 5_000, "idle": 20_000}
    kwargs = {k: values[k] for k in given_knobs}
    if general:
        kwargs = {k: (v if k == "probes" else timedelta(milliseconds=v)) for k, v in kwargs.items()}
    before = dict(sim.kernel.values)
    writes = refused == "enable" or refused in given_knobs
    if not writes:
        netkeepalive.configure(FD, enable=enable, **kwargs)
        return
    with pytest.raises(OSError) as info:
        netkeepalive.configure(FD, enable=enable, **kwargs)
    assert info.value.errno == errno.EACCES
    assert str(info.value).endswith("; nothing was changed")
    assert sim.kernel.values == before


def test_windows_before_16299_names_what_it_cannot_put_back(
    simulate: Callable[..., Any],
) -> None:
    """SIO_KEEPALIVE_VALS cannot be read back, and turns keepalive on itself."""
    sim = simulate("win32", build=15063)
    sim.kernel.failures[("setsockopt", 0xFFFF, 8)] = errno.EACCES  # SO_KEEPALIVE
    with pytest.raises(OSError) as info:
        netkeepalive.configure(FD, idle=10_000, interval=2_000)
    message = str(info.value)
    assert message.startswith("configure: setsockopt(SO_KEEPALIVE): ")
    unknown = "this system cannot read SIO_KEEPALIVE_VALS back, so its previous value is unknown"
    assert f"SIO_KEEPALIVE_VALS (idle) is left at 10000 ms ({unknown})" in message
    assert f"SIO_KEEPALIVE_VALS (interval) is left at 2000 ms ({unknown})" in message
    # The ioctl turned keepalive on; writing back off is refused here too.
    assert "SO_KEEPALIVE is left at 1 (writing back 0 was refused" in message
    assert message.endswith("; everything else is as before")


#: A child that installs a policy and connects one new socket under it.
_INSTALL_CHILD = r"""
import json, socket, sys, warnings
sys.path.insert(0, sys.argv[1])
from atomic_child import read
import netkeepalive, netkeepalive._access

listener = socket.create_server(("127.0.0.1", 0))
netkeepalive.get_settings(listener)  # the accessors, built for the real C library
netkeepalive.install(idle=20_000, interval=5_000, probes=4, user_timeout=9_000)
sock = socket.socket()
before = read(sock)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    sock.connect(listener.getsockname())
print(json.dumps({
    "socket_module_route": netkeepalive._access.accessors.backend.libc_calls,
    "before": before,
    "after": read(sock),
    "warnings": [str(w.message) for w in caught],
}))
"""


@linux_only
@pytest.mark.parametrize(
    "refused", ["TCP_KEEPIDLE", "TCP_KEEPINTVL", "SO_KEEPALIVE", "TCP_KEEPCNT", "TCP_USER_TIMEOUT"]
)
def test_install_connect_is_all_or_nothing(refused: str) -> None:
    """install()'s precomputed writes (the socket module's route) put back what they wrote."""
    prefix = _filter_prefix(refused)
    result = _run(prefix, sys.executable, "-c", _INSTALL_CHILD, str(HERE / "helpers"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["socket_module_route"] is True
    assert report["after"] == report["before"]
    [message] = report["warnings"]
    assert f"configure: setsockopt({refused}): [Errno 1] " in message, message
    assert "nothing was changed" in message, message

"""system_defaults(), Settings.data_timeout and configure(only_lower=True).

Linux cases run on real sockets and compare with ``/proc/sys/net/ipv4`` and
the standard library's ``getsockopt``; one (root only) runs a child in a
fresh network namespace with other sysctls and lets the kernel time out
unacknowledged data.  Other systems are simulated with ``fakelib`` (and a
stand-in ``winreg``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import netkeepalive as nk
from netkeepalive._defaults import linux_data_timeout

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")
PROC = Path("/proc/sys/net/ipv4")
TCP = socket.IPPROTO_TCP
FD = 7


def sysctl(name: str) -> int:
    return int((PROC / name).read_text().split()[0])


def summed_timeout(retries2: int, rto_max: int = 120_000, rto_min: int = 200) -> int:
    """retries2 + 1 retransmission timeouts, doubling from rto_min, capped at rto_max."""
    return sum(min(rto_min * 2**i, rto_max) for i in range(retries2 + 1))


def this_data_timeout() -> int:
    rto_max = sysctl("tcp_rto_max_ms") if (PROC / "tcp_rto_max_ms").exists() else 120_000
    return summed_timeout(sysctl("tcp_retries2"), rto_max)


# -- the arithmetic ----------------------------------------------------------


@pytest.mark.parametrize(
    ("retries2", "rto_max", "expected"),
    [
        (15, 120_000, 924_600),  # Linux's defaults: about 15 minutes
        (8, 120_000, 102_200),
        (0, 120_000, 200),
        (3, 120_000, 3_000),
        (9, 120_000, 204_600),  # the last doubling: 200 ms x 2**9 = 102.4 s
        (10, 120_000, 324_600),  # then 120 s each
        (15, 60_000, 522_200),  # net.ipv4.tcp_rto_max_ms (Linux 6.15+)
        (3, 1_000, 2_400),
        (1, 1_000, 600),
    ],
)
def test_linux_data_timeout(retries2: int, rto_max: int, expected: int) -> None:
    assert summed_timeout(retries2, rto_max) == expected
    assert linux_data_timeout(retries2, rto_max) == expected


def test_linux_data_timeout_agrees_with_the_sum_everywhere() -> None:
    for rto_max in (1_000, 1_500, 60_000, 120_000):
        for retries2 in range(0, 40):
            assert linux_data_timeout(retries2, rto_max) == summed_timeout(retries2, rto_max)


# -- this namespace ---------------------------------------------------------------


@linux_only
def test_system_defaults_follow_this_namespace() -> None:
    defaults = nk.system_defaults()
    assert defaults == nk.Settings(
        False,
        sysctl("tcp_keepalive_time") * 1000,
        sysctl("tcp_keepalive_intvl") * 1000,
        sysctl("tcp_keepalive_probes"),
        0,
    )
    # What the standard library reads from a fresh socket.
    with socket.socket() as fresh:
        assert defaults.idle == fresh.getsockopt(TCP, socket.TCP_KEEPIDLE) * 1000
        assert defaults.interval == fresh.getsockopt(TCP, socket.TCP_KEEPINTVL) * 1000
        assert defaults.probes == fresh.getsockopt(TCP, socket.TCP_KEEPCNT)
        assert fresh.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


@linux_only
def test_data_timeout_follows_this_namespace() -> None:
    assert nk.system_defaults().data_timeout == this_data_timeout()
    assert nk.Settings(True, 1000, 1000, 1, 0).data_timeout == this_data_timeout()
    assert nk.Settings(True, 1000, 1000, 1, 2500).data_timeout == 2500


# -- a fresh network namespace -------------------------------------------------

NETNS_SYSCTLS = {
    "tcp_keepalive_time": 600,
    "tcp_keepalive_intvl": 20,
    "tcp_keepalive_probes": 4,
    "tcp_retries2": 5,
    "tcp_rto_max_ms": 1000,  # Linux 6.15+; left alone where the kernel lacks it
}

NETNS_CHILD = r"""
import json, os, socket, sys, time
import netkeepalive as nk
from netkeepalive._linux._silence import silent_pair

os.system("ip link set lo up")
wanted = json.loads(sys.argv[1])
for name, value in wanted.items():
    path = "/proc/sys/net/ipv4/" + name
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write(str(value))
proc = {}
for name in wanted:
    path = "/proc/sys/net/ipv4/" + name
    if os.path.exists(path):
        with open(path) as f:
            proc[name] = int(f.read())
defaults = nk.system_defaults()
with socket.socket() as fresh:
    tcp = socket.IPPROTO_TCP
    fresh_values = [fresh.getsockopt(tcp, o) for o in
                    (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)]
retransmissions = []
error = failed_at = None
if sys.argv[2] == "data":
    with silent_pair() as (client, server):
        start = time.monotonic()
        client.sendall(b"never acknowledged" * 50)
        seen = 0
        while time.monotonic() < start + 2 * defaults.data_timeout / 1000 + 5:
            now = time.monotonic() - start
            info = nk.get_tcp_info(client)
            # tcpi_retransmits counts the retransmission timer's
            # retransmissions (a tail-loss probe before them is not one).
            if info.retransmits > seen:
                seen = info.retransmits
                retransmissions.append(now)
            error = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                failed_at = now
                break
            time.sleep(0.002)
print(json.dumps({
    "proc": proc,
    "defaults": list(defaults),
    "data_timeout": defaults.data_timeout,
    "fresh": fresh_values,
    "error": error,
    "failed_at": failed_at,
    "retransmissions": retransmissions,
}))
"""


def _netns_needs() -> Optional[str]:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "creating a network namespace and writing its sysctls needs root"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2)"
    return None


def run_in_fresh_namespace(experiment: str) -> Dict[str, Any]:
    """Run NETNS_CHILD under ``unshare --net``; check this namespace is untouched.

    The namespace lives as long as the child: nothing to clean up afterwards.
    """
    before = {name: (PROC / name).read_text() for name in NETNS_SYSCTLS if (PROC / name).exists()}
    result = subprocess.run(
        [
            "unshare",
            "--net",
            sys.executable,
            "-c",
            NETNS_CHILD,
            json.dumps(NETNS_SYSCTLS),
            experiment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert {name: (PROC / name).read_text() for name in before} == before
    child: Dict[str, Any] = json.loads(result.stdout)
    return child


needs_netns = pytest.mark.skipif(_netns_needs() is not None, reason=str(_netns_needs()))


@pytest.mark.root
@needs_netns
def test_fresh_namespace_has_its_own_defaults() -> None:
    child = run_in_fresh_namespace("")
    proc = child["proc"]
    assert proc["tcp_keepalive_time"] == 600
    assert proc["tcp_retries2"] == 5
    assert child["defaults"] == [False, 600_000, 20_000, 4, 0]
    assert child["fresh"] == [600, 20, 4]
    rto_max = proc.get("tcp_rto_max_ms", 120_000)
    # 4400 ms with a 1 s cap (Linux 6.15+), else 12600 ms.
    assert child["data_timeout"] == summed_timeout(5, rto_max)


@pytest.mark.root
@pytest.mark.slow
@needs_netns
def test_fresh_namespace_data_timeout_in_the_kernel() -> None:
    """Unacknowledged data fails when the child's ``data_timeout`` says.

    At the first retransmission due at or after ``data_timeout``, counted
    from the retransmission timer's first retransmission.
    """
    child = run_in_fresh_namespace("data")
    rto_max = child["proc"].get("tcp_rto_max_ms", 120_000)
    expected = summed_timeout(5, rto_max)
    assert child["data_timeout"] == expected
    assert child["error"] == errno.ETIMEDOUT, child
    first, last = child["retransmissions"][0], child["retransmissions"][-1]
    failed = child["failed_at"] - first  # s, counted from the first retransmission
    assert expected / 1000 - 0.05 <= failed, child
    # ... at the first retransmission timer due after it: never a whole
    # backoff (capped at rto_max) later, and after the last retransmission.
    assert failed <= expected / 1000 + min(rto_max, expected) / 1000 + 0.5, child
    assert last < child["failed_at"]
    assert last - first < expected / 1000, child


# -- other systems, simulated ------------------------------------------------------


def test_macos_defaults_are_a_fresh_sockets(simulate: Callable[..., Any]) -> None:
    sim = simulate("darwin", release="23.1.0", version="Darwin Kernel Version 23.1.0")
    # net.inet.tcp.keepidle / keepintvl / keepcnt as a fresh socket reports them.
    sim.kernel.defaults = {(TCP, 0x10): 7200, (TCP, 0x101): 75, (TCP, 0x102): 8}
    assert nk.system_defaults() == nk.Settings(False, 7_200_000, 75_000, 8, 0)
    read = [(c.func, c.level, c.option) for c in sim.kernel.calls]
    assert read == [
        ("getsockopt", TCP, 0x10),  # TCP_KEEPALIVE
        ("getsockopt", TCP, 0x101),  # TCP_KEEPINTVL
        ("getsockopt", TCP, 0x102),  # TCP_KEEPCNT
        ("getsockopt", TCP, 0x80),  # TCP_RXT_CONNDROPTIME
    ]
    # No fixed data timeout there: it depends on the connection's RTT.
    assert nk.system_defaults().data_timeout is None


def test_illumos_unset_values_are_none_not_zero(simulate: Callable[..., Any]) -> None:
    sim = simulate("sunos5", release="5.11", version="omnios-r151046-2b8a7ab")
    # TCP_KEEPIDLE 34 reports the system's idle time; TCP_KEEPINTVL 36 and
    # TCP_KEEPCNT 35 read back 0 while never set (tcp_opt_data.c).
    sim.kernel.defaults = {(TCP, 34): 7200}
    assert nk.system_defaults() == nk.Settings(False, 7_200_000, None, None, None)


def test_openbsd_has_no_per_socket_defaults(simulate: Callable[..., Any]) -> None:
    sim = simulate("openbsd7", release="7.5", version="GENERIC.MP#82")
    assert nk.system_defaults() == nk.Settings(False, None, None, None, None)
    assert sim.kernel.calls == []


class FakeKey:
    def __enter__(self) -> FakeKey:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def fake_winreg(values: Dict[str, Tuple[object, int]]) -> types.ModuleType:
    """A ``winreg`` whose Tcpip\\Parameters key holds *values* (name -> (value, type))."""
    module = types.ModuleType("winreg")
    opened: List[Tuple[object, str]] = []

    def open_key(root: object, path: str) -> FakeKey:
        opened.append((root, path))
        return FakeKey()

    def query_value_ex(key: FakeKey, name: str) -> Tuple[object, int]:
        if name not in values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return values[name]

    module.HKEY_LOCAL_MACHINE = "HKLM"  # type: ignore[attr-defined]
    module.REG_DWORD = 4  # type: ignore[attr-defined]
    module.REG_SZ = 1  # type: ignore[attr-defined]
    module.OpenKey = open_key  # type: ignore[attr-defined]
    module.QueryValueEx = query_value_ex  # type: ignore[attr-defined]
    module.opened = opened  # type: ignore[attr-defined]
    return module


@pytest.fixture
def windows(simulate: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    sim = simulate("win32", build=19045)

    def install(values: Dict[str, Tuple[object, int]]) -> types.ModuleType:
        module = fake_winreg(values)
        monkeypatch.setitem(sys.modules, "winreg", module)
        return module

    return sim, install


def test_windows_defaults_from_the_registry(windows: Any) -> None:
    sim, install = windows
    module = install({"KeepAliveTime": (300_000, 4), "KeepAliveInterval": (2_000, 4)})
    assert nk.system_defaults() == nk.Settings(False, 300_000, 2_000, 10, None)
    assert module.opened == [("HKLM", r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters")] * 2
    assert sim.kernel.calls == []  # nothing asked of a socket


def test_windows_documented_defaults_when_unset(windows: Any) -> None:
    _sim, install = windows
    install({})
    assert nk.system_defaults() == nk.Settings(False, 7_200_000, 1_000, 10, None)
    # A value of the wrong type or out of range is not used either.
    install({"KeepAliveTime": ("60000", 1), "KeepAliveInterval": (0, 4)})
    assert nk.system_defaults() == nk.Settings(False, 7_200_000, 1_000, 10, None)


# -- configure(only_lower=True) on real sockets ------------------------------------


def read(sock: socket.socket) -> Tuple[int, int, int, int, int]:
    """SO_KEEPALIVE, TCP_KEEPIDLE (s), TCP_KEEPINTVL (s), TCP_KEEPCNT, TCP_USER_TIMEOUT (ms)."""
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
    )


def preset(
    sock: socket.socket, keepalive: int, idle: int, interval: int, count: int, ut: int
) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, keepalive)
    sock.setsockopt(TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(TCP, socket.TCP_KEEPCNT, count)
    sock.setsockopt(TCP, socket.TCP_USER_TIMEOUT, ut)


@linux_only
def test_only_lower_lowers_the_system_defaults(client: socket.socket) -> None:
    settings = nk.configure(
        client, idle=10_000, interval=5_000, probes=3, user_timeout=30_000, only_lower=True
    )
    assert read(client) == (1, 10, 5, 3, 30_000)
    assert settings == nk.Settings(True, 10_000, 5_000, 3, 30_000)


@linux_only
def test_only_lower_never_raises_a_lowered_value(client: socket.socket) -> None:
    preset(client, 1, 5, 2, 2, 10_000)
    settings = nk.configure(
        client, idle=60_000, interval=10_000, probes=9, user_timeout=60_000, only_lower=True
    )
    assert read(client) == (1, 5, 2, 2, 10_000)
    assert settings == nk.Settings(True, 5_000, 2_000, 2, 10_000)


@linux_only
def test_only_lower_takes_each_value_on_its_own(client: socket.socket) -> None:
    preset(client, 0, 30, 2, 9, 0)
    settings = nk.configure(client, idle=10_000, interval=5_000, probes=3, only_lower=True)
    # idle 30 -> 10 and probes 9 -> 3 are lower; interval 2 s stays (5 s is higher);
    # keepalive is switched on; the user timeout was not given.
    assert read(client) == (1, 10, 2, 3, 0)
    assert settings == nk.Settings(True, 10_000, 2_000, 3, 0)


@linux_only
def test_only_lower_compares_in_the_kernels_unit(client: socket.socket) -> None:
    preset(client, 1, 1, 1, 1, 0)
    # 1500 ms is 1 s to the kernel: equal, so not "lower"; nothing changes.
    assert nk.configure(client, idle=1_500, only_lower=True).idle == 1_000
    assert read(client) == (1, 1, 1, 1, 0)


@linux_only
def test_only_lower_user_timeout_zero_is_the_data_timeout(client: socket.socket) -> None:
    system = this_data_timeout()
    tcp_user_timeout = socket.TCP_USER_TIMEOUT
    # 0 (system default, ~924.6 s) -> a shorter explicit limit: lowered.
    nk.configure(client, user_timeout=system - 1_000, only_lower=True)
    assert client.getsockopt(TCP, tcp_user_timeout) == system - 1_000
    # An explicit limit shorter than the default is never replaced by 0.
    nk.configure(client, user_timeout=0, only_lower=True)
    assert client.getsockopt(TCP, tcp_user_timeout) == system - 1_000
    # A longer one is: 0 brings back the (shorter) system default.
    client.setsockopt(TCP, tcp_user_timeout, system + 1_000)
    nk.configure(client, user_timeout=0, only_lower=True)
    assert client.getsockopt(TCP, tcp_user_timeout) == 0
    # And a limit longer than the system default never replaces 0.
    nk.configure(client, user_timeout=system + 1_000, only_lower=True)
    assert client.getsockopt(TCP, tcp_user_timeout) == 0


@linux_only
def test_only_lower_never_switches_keepalive_off(client: socket.socket) -> None:
    preset(client, 1, 100, 10, 5, 0)
    settings = nk.configure(client, enable=False, idle=50_000, only_lower=True)
    assert read(client) == (1, 50, 10, 5, 0)
    assert settings.enabled
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    assert not nk.configure(client, enable=False, probes=3, only_lower=True).enabled
    assert read(client) == (0, 50, 10, 3, 0)


@linux_only
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"idle": 5_000, "interval": 500}, ValueError, "interval: 500 ms is less than one second"),
        ({"probes": 3, "user_timeout": -1}, ValueError, "user_timeout: -1 ms is negative"),
        ({"idle": 5_000, "probes": 128}, ValueError, "TCP_KEEPCNT takes 1 to 127"),
        ({"idle": "5000"}, TypeError, "idle: expected milliseconds"),
        ({"idle": 5_000, "enable": 1}, TypeError, "enable: expected a bool"),
    ],
)
def test_only_lower_bad_values_change_nothing(
    client: socket.socket, kwargs: Dict[str, Any], error: type, message: str
) -> None:
    preset(client, 0, 100, 10, 5, 0)
    with pytest.raises(error, match=message):
        nk.configure(client, only_lower=True, **kwargs)
    assert read(client) == (0, 100, 10, 5, 0)


@linux_only
def test_only_lower_must_be_a_bool(client: socket.socket) -> None:
    with pytest.raises(TypeError, match="only_lower: expected a bool, got int"):
        nk.configure(client, idle=5_000, only_lower=1)  # type: ignore[arg-type]
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_only_lower_needs_to_read_back(simulate: Callable[..., Any]) -> None:
    # Before build 16299 idle and interval go through SIO_KEEPALIVE_VALS,
    # which cannot be read back: refused before the socket is touched.
    sim = simulate("win32", build=15063)
    with pytest.raises(nk.UnsupportedOptionError, match="cannot be read back"):
        nk.configure(FD, idle=10_000, probes=3, only_lower=True)
    assert sim.kernel.calls == []


def test_only_lower_where_the_data_timeout_is_unknown(simulate: Callable[..., Any]) -> None:
    # macOS: 0 (the system's retransmission limit) counts as longer than any value.
    sim = simulate("darwin", release="23.1.0", version="Darwin Kernel Version 23.1.0")
    nk.configure(FD, user_timeout=30_000, only_lower=True)
    assert sim.kernel.values[FD, TCP, 0x80] == 30  # TCP_RXT_CONNDROPTIME, s
    sim.kernel.calls.clear()
    nk.configure(FD, user_timeout=0, only_lower=True)
    assert sim.kernel.values[FD, TCP, 0x80] == 30
    assert ("setsockopt", 0x80) not in [(c.func, c.option) for c in sim.kernel.calls]

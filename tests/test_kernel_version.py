"""The BSD table follows the kernel's version number (sysctlbyname), not its release string.

FreeBSD, DragonFly and NetBSD cannot run here: a simulated C library
answers ``sysctlbyname`` as the kernel would (``fakelib.FakeLibc``), and the
fallback to ``uname`` is exercised with a call that fails, including this
machine's own C library, which has no ``sysctlbyname``.
"""

from __future__ import annotations

import ctypes
import errno
import sys
from typing import Any, Callable

import pytest
from helpers.fakelib import Call, FakeLibc, Kernel

import netkeepalive
from netkeepalive import Settings, constants
from netkeepalive import _sysctl as sysctl

TCP = 6
FD = 7


def test_sysctl_int_reads_an_int_through_the_c_library(mocker: Any) -> None:
    kernel = Kernel(sysctls={"kern.osreldate": 1_401_000})
    mocker.patch("netkeepalive._sysctl._library", return_value=FakeLibc(kernel))
    assert sysctl.sysctl_int("kern.osreldate") == 1_401_000
    assert sysctl.sysctl_int("kern.nosuchname") is None  # ENOENT


def test_sysctl_int_is_none_where_the_call_fails(mocker: Any) -> None:
    class Refusing:
        def sysctlbyname(self, *args: Any) -> int:
            ctypes.set_errno(errno.EPERM)
            return -1

    mocker.patch("netkeepalive._sysctl._library", return_value=Refusing())
    assert sysctl.sysctl_int("kern.osreldate") is None
    mocker.patch("netkeepalive._sysctl._library", side_effect=OSError("no C library"))
    assert sysctl.sysctl_int("kern.osreldate") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc has no sysctlbyname")
def test_linux_c_library_has_no_sysctlbyname_and_that_is_none() -> None:
    assert sysctl.sysctl_int("kern.osreldate") is None
    assert sysctl.kernel_version("freebsd14") is None


# (sys.platform, uname -r, kernel version number, table)
CASES = [
    # The number decides, whatever the release string says.
    ("freebsd14", "13.3-RELEASE", 1_400_000, "freebsd"),
    ("freebsd14", "14.0-CURRENT", 1_399_999, "freebsd-pre-14"),
    ("freebsd15", "15.0-RELEASE", 1_500_000, "freebsd"),
    # A 5.7-DEVELOPMENT snapshot past 500702 already takes seconds.
    ("dragonfly5", "5.7-DEVELOPMENT", 500_702, "dragonfly"),
    ("dragonfly5", "5.7-DEVELOPMENT", 500_701, "dragonfly-pre-5.8"),
    # __NetBSD_Version__ MMmmrrpp00: 8.0 is 800000000; 7.99.x -current is below.
    ("netbsd8", "8.0", 800_000_000, "netbsd"),
    ("netbsd7", "7.99.75", 799_007_500, "netbsd-pre-8"),
    ("netbsd10", "10.0", 1_000_000_000, "netbsd"),
]


@pytest.mark.parametrize(("platform", "release", "number", "table"), CASES)
def test_the_kernel_version_number_picks_the_table(
    simulate: Callable[..., Any], platform: str, release: str, number: int, table: str
) -> None:
    name = "kern.osrevision" if platform.startswith("netbsd") else "kern.osreldate"
    sim = simulate(platform, release=release, version="", sysctls={name: number})
    assert sim.backend.table.name == table


@pytest.mark.parametrize(
    ("platform", "release", "table"),
    [
        ("freebsd14", "14.1-RELEASE", "freebsd"),
        ("freebsd13", "13.3-RELEASE", "freebsd-pre-14"),
        ("dragonfly5", "5.8.3-RELEASE", "dragonfly"),
        ("dragonfly5", "5.6-RELEASE", "dragonfly-pre-5.8"),
        ("netbsd8", "8.0", "netbsd"),
        ("netbsd7", "7.2", "netbsd-pre-8"),
    ],
)
def test_uname_decides_where_the_sysctl_fails(
    simulate: Callable[..., Any], platform: str, release: str, table: str
) -> None:
    sim = simulate(platform, release=release, version="")  # kernel.sysctls is empty: ENOENT
    assert sim.backend.table.name == table


def test_explicit_numbers_and_releases() -> None:
    assert constants.detect_platform("freebsd13", osversion=1_400_000) == "freebsd"
    assert constants.detect_platform("netbsd9", osversion=799_000_000) == "netbsd-pre-8"
    # An explicit release is a description of another system: no sysctl.
    assert constants.detect_platform("freebsd14", "13.2-RELEASE", "") == "freebsd-pre-14"


# -- FreeBSD: kern.hz and net.inet.tcp.maxunacktime ----------------------------


def freebsd(simulate: Callable[..., Any], **sysctls: int) -> Any:
    return simulate(
        "freebsd14", release="14.1-RELEASE", sysctls={"kern.osreldate": 1_401_000, **sysctls}
    )


def test_freebsd_ceiling_follows_kern_hz(simulate: Callable[..., Any]) -> None:
    """tcp_default_ctloutput refuses seconds above UINT_MAX / hz: at hz 100, 42949672 s."""
    sim = freebsd(simulate, **{"kern.hz": 100})
    table = sim.backend.table
    assert table.idle.maximum == table.interval.maximum == (2**32 - 1) // 100
    assert table.user_timeout.maximum == (2**32 - 1) // 100
    netkeepalive.set_keepalive_idle(FD, 42_949_672_000)  # 1000 hz's ceiling x 10: fine here
    assert sim.kernel.calls[-1] == Call("setsockopt", FD, TCP, 256, 42_949_672, 4)
    with pytest.raises(ValueError, match="TCP_KEEPIDLE takes 1 to 42949672 whole seconds"):
        netkeepalive.set_keepalive_idle(FD, 42_949_673_000)


def test_freebsd_ceiling_without_kern_hz_assumes_1000(simulate: Callable[..., Any]) -> None:
    sim = freebsd(simulate)
    assert sim.backend.table.idle.maximum == (2**32 - 1) // 1000


def test_freebsd_defaults_report_maxunacktime(simulate: Callable[..., Any]) -> None:
    """A TCP_MAXUNACKTIME of 0 means the sysctl net.inet.tcp.maxunacktime (ms), not "no limit"."""
    freebsd(simulate, **{"net.inet.tcp.maxunacktime": 90_000})
    assert netkeepalive.system_defaults().user_timeout == 90_000


def test_freebsd_defaults_without_the_sysctl_say_unknown(simulate: Callable[..., Any]) -> None:
    freebsd(simulate)
    assert netkeepalive.system_defaults().user_timeout is None


# -- macOS: TCP_RXT_CONNDROPTIME only shortens retransmission ------------------


def test_macos_data_timeout_is_capped_at_the_retransmission_limit(mocker: Any) -> None:
    """xnu stops after TCP_MAXRXTSHIFT (12) retransmissions, 13 timeouts of at most 64 s."""
    mocker.patch.object(sys, "platform", "darwin")
    assert Settings(True, 1, 1, 1, 2_000_000).data_timeout == 832_000
    assert Settings(True, 1, 1, 1, 60_000).data_timeout == 60_000
    assert Settings(True, 1, 1, 1, 0).data_timeout is None  # depends on the RTT there


def test_other_systems_data_timeout_is_the_user_timeout(mocker: Any) -> None:
    mocker.patch.object(sys, "platform", "freebsd14")
    assert Settings(True, 1, 1, 1, 2_000_000).data_timeout == 2_000_000

"""What each simulated kernel expects, from its own source (tests/data/kernel-rules.tsv).

The call order that makes macOS honour the idle time (enable before idle),
FreeBSD 14's user timeout, illumos' ranges and unset values, NetBSD's
500 ms ticks and (before 8.0) missing read-back, DragonFly's millisecond ticks and the
behaviour on a system netkeepalive has no table for.  The simulated kernels
refuse what the real ones refuse, so a test fails when the library relies
on a value the real kernel would reject.
"""

from __future__ import annotations

import errno
import socket
from datetime import timedelta
from typing import Any, Callable, Dict, Tuple

import pytest
from helpers.fakelib import XNU_DEFAULT_KEEPIDLE, Call

import netkeepalive
from netkeepalive import Settings, UnsupportedOptionError

TCP = 6
BSD_ENABLE = (0xFFFF, 8)
FD = 7

#: table -> (sys.platform, uname release, idle option, SO_KEEPALIVE (level, option))
ORDER_CASES: Dict[str, Tuple[str, str, int, Tuple[int, int]]] = {
    "darwin": ("darwin", "23.1.0", 0x10, BSD_ENABLE),
    "freebsd": ("freebsd14", "14.1-RELEASE", 256, BSD_ENABLE),
    "linux": ("linux", "6.8.0", 4, (socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
}


def order_sim(simulate: Callable[..., Any], name: str) -> Any:
    """A simulated kernel of table *name* with xnu's keepalive timer rule.

    xnu's rule is the strictest of the three (Linux and FreeBSD also re-arm
    with the new idle time when it is set while keepalive is on), so
    passing it on every table shows the order works everywhere.
    """
    platform, release, idle, enable = ORDER_CASES[name]
    sim = simulate(platform, release=release)
    assert sim.backend.table.name == name
    sim.kernel.timer = ((TCP, idle), enable)
    return sim


def setsockopts(sim: Any) -> list[Tuple[int, int]]:
    return [(c.option, c.value) for c in sim.kernel.calls if c.func == "setsockopt"]


# -- item 1: SO_KEEPALIVE=1 before the last idle write ------------------------


@pytest.mark.parametrize("name", sorted(ORDER_CASES))
@pytest.mark.parametrize("idle", [30_000, timedelta(seconds=30)], ids=["fast", "general"])
def test_configure_arms_the_timer_with_the_new_idle_time(
    simulate: Callable[..., Any], name: str, idle: Any
) -> None:
    sim = order_sim(simulate, name)
    idle_option, enable = ORDER_CASES[name][2], ORDER_CASES[name][3]
    settings = netkeepalive.configure(FD, idle=idle, interval=5_000, probes=3)
    assert settings.enabled is True
    assert settings.idle == 30_000
    assert sim.kernel.armed[FD] == 30  # not the system's 2 hours
    sets = setsockopts(sim)
    last_idle = max(i for i, (opt, _) in enumerate(sets) if opt == idle_option)
    assert sets.index((enable[1], 1)) < last_idle


@pytest.mark.parametrize("name", sorted(ORDER_CASES))
def test_set_keepalive_arms_the_timer_with_the_initial_delay(
    simulate: Callable[..., Any], name: str
) -> None:
    sim = order_sim(simulate, name)
    netkeepalive.set_keepalive(FD, True, 45_000)
    assert sim.kernel.armed[FD] == 45
    assert netkeepalive.get_keepalive_idle(FD) == 45_000


def test_the_timer_model_catches_the_old_order(simulate: Callable[..., Any]) -> None:
    """Idle first and SO_KEEPALIVE after: xnu keeps its 2 hours (the bug fixed here)."""
    sim = order_sim(simulate, "darwin")
    netkeepalive.set_keepalive_idle(FD, 30_000)
    netkeepalive.set_keepalive(FD, True)
    assert sim.kernel.armed[FD] == XNU_DEFAULT_KEEPIDLE
    assert netkeepalive.get_keepalive_idle(FD) == 30_000  # what get_settings would report


@pytest.mark.parametrize("name", sorted(ORDER_CASES))
def test_bad_value_still_changes_nothing(simulate: Callable[..., Any], name: str) -> None:
    sim = order_sim(simulate, name)
    with pytest.raises(ValueError, match="probes"):
        netkeepalive.configure(FD, idle=30_000, probes=0)
    with pytest.raises(TypeError, match="enable"):
        netkeepalive.configure(FD, enable=1, idle=30_000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initial_delay"):
        netkeepalive.set_keepalive(FD, True, -5)
    assert sim.kernel.calls == []


def test_refused_idle_leaves_keepalive_off(simulate: Callable[..., Any]) -> None:
    sim = order_sim(simulate, "darwin")
    sim.kernel.failures["setsockopt", TCP, 0x10] = errno.EINVAL
    with pytest.raises(OSError, match=r"setsockopt\(TCP_KEEPALIVE\)"):
        netkeepalive.configure(FD, idle=30_000)
    with pytest.raises(OSError, match=r"setsockopt\(TCP_KEEPALIVE\)"):
        netkeepalive.set_keepalive(FD, True, 30_000)
    assert (8, 1) not in setsockopts(sim)


def test_disabling_writes_the_idle_time_once(simulate: Callable[..., Any]) -> None:
    sim = order_sim(simulate, "darwin")
    netkeepalive.configure(FD, enable=False, idle=30_000)
    assert setsockopts(sim) == [(0x10, 30), (8, 0)]


# -- item 2: FreeBSD 14 has a user timeout, 13 does not -----------------------


def test_freebsd_14_user_timeout_is_tcp_maxunacktime(simulate: Callable[..., Any]) -> None:
    sim = simulate("freebsd14", release="14.1-RELEASE")
    assert netkeepalive.set_user_timeout(FD, 1_999) is True  # truncated to whole seconds
    assert sim.kernel.calls == [Call("setsockopt", FD, TCP, 68, 1, 4)]
    assert netkeepalive.get_user_timeout(FD) == 1_000
    assert netkeepalive.configure(FD, user_timeout=0).user_timeout == 0  # 0 = no limit
    with pytest.raises(ValueError, match="TCP_MAXUNACKTIME takes 0 to 4294967 whole seconds"):
        netkeepalive.set_user_timeout(FD, 4_294_968_000)


def test_freebsd_13_has_no_user_timeout(simulate: Callable[..., Any]) -> None:
    sim = simulate("freebsd13", release="13.3-RELEASE")
    with pytest.raises(UnsupportedOptionError, match="freebsd-pre-14") as info:
        netkeepalive.set_user_timeout(FD, 5_000)
    assert info.value.errno == errno.ENOPROTOOPT
    assert sim.kernel.calls == []
    assert (TCP, 68) not in sim.kernel.known  # the 13.x kernel would refuse it too
    assert netkeepalive.get_settings(FD).user_timeout is None


# -- item 3: illumos ranges and unset values ----------------------------------


def illumos(simulate: Callable[..., Any]) -> Any:
    return simulate("sunos5", release="5.11", version="omnios-r151046-2b8a7ab")


@pytest.mark.parametrize("ms", [999, 864_001_000])
def test_illumos_idle_outside_1s_to_10_days_is_refused_first(
    simulate: Callable[..., Any], ms: int
) -> None:
    sim = illumos(simulate)
    with pytest.raises(ValueError, match="TCP_KEEPIDLE takes 1 to 864000 whole seconds"):
        netkeepalive.configure(FD, idle=ms, interval=5_000)
    assert sim.kernel.calls == []


def test_illumos_idle_at_the_bounds_reaches_the_kernel(simulate: Callable[..., Any]) -> None:
    sim = illumos(simulate)
    netkeepalive.set_keepalive_idle(FD, 1_000)
    netkeepalive.set_keepalive_idle(FD, 864_000_999)
    assert [c.value for c in sim.kernel.calls] == [1, 864_000]


def test_illumos_takes_an_idle_time_of_5_seconds(simulate: Callable[..., Any]) -> None:
    """OS-4686 (tcp_tunables.c _keepalive_interval {1 s, 10 days}): 5 s is valid."""
    sim = illumos(simulate)
    settings = netkeepalive.configure(FD, idle=5_000)
    assert settings.idle == 5_000
    assert (34, 5) in setsockopts(sim)


def test_solaris_keeps_its_10_second_minimum(simulate: Callable[..., Any]) -> None:
    sim = simulate("sunos5", release="5.11", version="11.4.0.15.0")
    with pytest.raises(ValueError, match="TCP_KEEPIDLE takes 10 to 864000 whole seconds"):
        netkeepalive.configure(FD, idle=5_000)
    assert sim.kernel.calls == []


def test_illumos_interval_outside_the_connection_bounds_names_them(
    simulate: Callable[..., Any],
) -> None:
    """The bounds are read from the socket (TCP_RTO_MIN/MAX) before writing."""
    sim = illumos(simulate)
    with pytest.raises(ValueError, match=r"400 ms to 60 s.*from 1 to 60 whole seconds") as info:
        netkeepalive.set_keepalive_interval(FD, 61_000)  # default maximum: 60 s
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.EINVAL
    assert "setsockopt(TCP_KEEPINTVL)" in str(info.value)
    assert [c.option for c in sim.kernel.calls] == [0x1A, 0x1B]  # read, nothing written
    netkeepalive.set_keepalive_interval(FD, 60_000)
    assert netkeepalive.get_keepalive_interval(FD) == 60_000


def test_illumos_interval_follows_a_raised_retransmit_maximum(
    simulate: Callable[..., Any],
) -> None:
    sim = illumos(simulate)
    sim.kernel.values[FD, TCP, 0x1B] = 120_000  # TCP_RTO_MAX raised to 2 minutes
    netkeepalive.set_keepalive_interval(FD, 100_000)
    assert netkeepalive.get_keepalive_interval(FD) == 100_000


def test_illumos_interval_without_readable_bounds_names_the_tunable(
    simulate: Callable[..., Any],
) -> None:
    """Where TCP_RTO_MAX cannot be read, the kernel decides; its EINVAL names the bound."""
    sim = illumos(simulate)
    sim.kernel.failures["getsockopt", TCP, 0x1B] = errno.ENOPROTOOPT
    with pytest.raises(OSError, match="_rexmit_interval_max") as info:
        netkeepalive.set_keepalive_interval(FD, 61_000)
    assert info.value.errno == errno.EINVAL
    assert Call("setsockopt", FD, TCP, 36, 61, 4) in sim.kernel.calls


def test_illumos_unset_interval_and_probes_are_none_not_zero(
    simulate: Callable[..., Any],
) -> None:
    illumos(simulate)
    settings = netkeepalive.configure(FD, idle=20_000)
    assert settings == Settings(True, 20_000, None, None, None)
    assert netkeepalive.get_keepalive_interval(FD) is None
    assert netkeepalive.get_keepalive_probes(FD) is None
    netkeepalive.set_keepalive_probes(FD, 4)
    assert netkeepalive.get_keepalive_probes(FD) == 4


# -- item 4: NetBSD's 500 ms ticks, read back from 8.0 on ----------------------


def test_netbsd_7_applies_ticks_and_never_fails_on_the_read_back(
    simulate: Callable[..., Any],
) -> None:
    sim = simulate("netbsd7", release="7.2", version="NetBSD 7.2 (GENERIC)")
    assert sim.backend.table.name == "netbsd-pre-8"
    settings = netkeepalive.configure(FD, idle=10_000, interval=3_250, probes=5)
    assert settings == Settings(True, None, None, None, None)
    assert setsockopts(sim) == [(6, 5), (5, 6), (3, 20), (8, 1), (3, 20)]
    asked = [c.option for c in sim.kernel.calls if c.func == "getsockopt"]
    # Only SO_KEEPALIVE, which NetBSD 7 answers: before the writes (to put
    # it back if one is refused) and in the read-back.
    assert asked == [8, 8]
    for getter in (
        netkeepalive.get_keepalive_idle,
        netkeepalive.get_keepalive_interval,
        netkeepalive.get_keepalive_probes,
    ):
        with pytest.raises(UnsupportedOptionError, match="netbsd-pre-8"):
            getter(FD)


@pytest.mark.parametrize("release", ["8.0", "10.0"])
def test_netbsd_8_reads_the_ticks_back(simulate: Callable[..., Any], release: str) -> None:
    sim = simulate(f"netbsd{release[0]}", release=release, version=f"NetBSD {release}")
    assert sim.backend.table.name == "netbsd"
    settings = netkeepalive.configure(FD, idle=10_000, interval=3_250, probes=5)
    assert setsockopts(sim) == [(6, 5), (5, 6), (3, 20), (8, 1), (3, 20)]
    # 20 and 6 ticks of 500 ms come back as 10 s and 3 s (3.25 s truncated).
    assert settings == Settings(True, 10_000, 3_000, 5, None)
    assert netkeepalive.get_keepalive_idle(FD) == 10_000
    assert netkeepalive.get_keepalive_interval(FD) == 3_000
    assert netkeepalive.get_keepalive_probes(FD) == 5


def test_netbsd_refuses_less_than_one_tick(simulate: Callable[..., Any]) -> None:
    sim = simulate("netbsd10", release="10.0", version="NetBSD 10.0 (GENERIC)")
    with pytest.raises(
        ValueError,
        match="less than one 500 ms tick, the unit of TCP_KEEPIDLE; TCP_KEEPIDLE takes 1 to",
    ):
        netkeepalive.set_keepalive_idle(FD, 499)
    assert sim.kernel.calls == []


# -- item 6: DragonFly before 5.8 converts milliseconds to 10 ms ticks --------


@pytest.mark.parametrize("ms", [1, 9])
def test_dragonfly_pre_5_8_refuses_sub_tick_values(simulate: Callable[..., Any], ms: int) -> None:
    sim = simulate("dragonfly5", release="5.6-RELEASE", version="DragonFly v5.6.2")
    with pytest.raises(ValueError, match="TCP_KEEPINTVL takes 10 to 2147483647 ms"):
        netkeepalive.set_keepalive_interval(FD, ms)
    assert sim.kernel.calls == []
    netkeepalive.set_keepalive_interval(FD, 10)  # one tick: the kernel takes it
    assert sim.kernel.calls == [Call("setsockopt", FD, TCP, 512, 10, 4)]


# -- item 7: a system with no table --------------------------------------------


def test_unknown_platform_has_so_keepalive_and_refuses_the_tcp_knobs(
    simulate: Callable[..., Any],
) -> None:
    sim = simulate("haiku1", release="1")
    enable = (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    assert netkeepalive.set_keepalive(FD, True) is True
    assert netkeepalive.get_keepalive(FD) is True
    assert sim.kernel.calls == [
        Call("setsockopt", FD, *enable, 1, 4),
        Call("getsockopt", FD, *enable, 1, 4),
    ]
    assert netkeepalive.get_settings(FD) == Settings(True, None, None, None, None)
    sim.kernel.calls.clear()
    for call in (
        lambda: netkeepalive.set_keepalive_idle(FD, 10_000),
        lambda: netkeepalive.get_keepalive_probes(FD),
        lambda: netkeepalive.set_user_timeout(FD, 10_000),
        lambda: netkeepalive.set_keepalive(FD, True, 10_000),
        lambda: netkeepalive.configure(FD, interval=10_000),
    ):
        with pytest.raises(UnsupportedOptionError, match="not supported on haiku1") as info:
            call()
        assert isinstance(info.value, OSError)
        assert info.value.errno == errno.ENOPROTOOPT
    assert sim.kernel.calls == []

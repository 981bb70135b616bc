"""detect_within: a detection budget turned into settings, per platform and in the kernel."""

from __future__ import annotations

import socket
import sys
from datetime import timedelta
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netkeepalive as nk
from netkeepalive import constants as c
from netkeepalive._budget import minimum_budget, plan_for
from netkeepalive._defaults import XNU_RETRANSMIT_LIMIT
from netkeepalive.constants import PlatformTable, Unit

TABLES = [
    c.LINUX,
    c.ANDROID,
    c.DARWIN,
    c.FREEBSD,
    c.FREEBSD_PRE_14,
    c.DRAGONFLY,
    c.DRAGONFLY_PRE_5_8,
    c.NETBSD,
    c.NETBSD_PRE_8,
    c.ILLUMOS,
    c.SOLARIS,
    c.AIX,
    c.windows_table(19045),
    c.windows_table(15063),
    c.windows_table(10240),
]

#: Milliseconds per kernel unit, written out here rather than taken from the library.
GRAIN = {Unit.SECONDS: 1000, Unit.HALF_SECONDS: 500}

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")


def _in_unit(table: PlatformTable, knob: str, ms: int) -> bool:
    """Whether *ms* is a whole number of *knob*'s unit, inside its range."""
    opt = table.option(knob)
    assert opt is not None
    grain = GRAIN.get(opt.unit, 1)
    return ms % grain == 0 and opt.minimum <= ms // grain <= opt.maximum


@settings(max_examples=300, deadline=None)
@given(
    table=st.sampled_from(TABLES),
    ms=st.integers(min_value=1, max_value=10**10),
    probes=st.none() | st.integers(min_value=1, max_value=20),
)
def test_every_plan_fits_the_budget_and_the_kernel(
    table: PlatformTable, ms: int, probes: int | None
) -> None:
    if probes is not None and table.probes is None:
        with pytest.raises(nk.UnsupportedOptionError):
            plan_for(table, ms, probes)
        return
    # Refused exactly when even the shortest settings do not fit, naming
    # that minimum.
    fewest = probes if probes is not None else (1 if table.probes is not None else 10)
    least = minimum_budget(table, fewest)
    if ms < least:
        with pytest.raises(ValueError, match=f"at least {least} ms"):
            plan_for(table, ms, probes)
        return
    plan = plan_for(table, ms, probes)
    idle, interval, count = plan["idle"], plan["interval"], plan["probes"]
    assert idle is not None
    assert interval is not None
    assert _in_unit(table, "idle", idle)
    assert _in_unit(table, "interval", interval)
    if table.probes is None:  # fixed by the system (Windows before 15063: 10)
        assert count is None
        count = 10
    else:
        assert count is not None
        assert _in_unit(table, "probes", count)
        if probes is not None:
            assert count == probes
    detection = idle + interval * count
    # The detection time and its timer slack (up to 8/63 of it) fit.
    assert detection + detection * 8 / 63 <= ms
    if table.user_timeout is None:
        assert plan["user_timeout"] is None
    elif plan["user_timeout"] is not None:
        user_timeout = plan["user_timeout"]
        grain = GRAIN.get(table.user_timeout.unit, 1)
        assert _in_unit(table, "user_timeout", user_timeout)
        if table.name in ("darwin", "freebsd"):
            # TCP_RXT_CONNDROPTIME and TCP_MAXUNACKTIME are checked at
            # retransmissions, from the first one, which back off
            # up to 64 s apart: data fails by min(2 x value, value + 64 s)
            # (plus a few RTOs), never past the detection time.
            assert min(2 * user_timeout, user_timeout + 64_000) <= detection
            wanted = max(detection // 2, detection - 65_000)
            if table.name == "darwin":
                # xnu stops retransmitting after 832 s anyway: never more.
                wanted = min(wanted, XNU_RETRANSMIT_LIMIT)
            assert user_timeout + grain > wanted
        else:
            # Covers the probing exactly (to its unit), never past it.
            assert user_timeout <= detection
            assert detection - user_timeout < grain


#: ``sys.platform`` of a system each table is for.
SYS_PLATFORM = {
    "linux": "linux",
    "android": "android",
    "darwin": "darwin",
    "freebsd": "freebsd14",
    "freebsd-pre-14": "freebsd13",
    "dragonfly": "dragonfly6",
    "dragonfly-pre-5.8": "dragonfly5",
    "netbsd": "netbsd10",
    "netbsd-pre-8": "netbsd7",
    "illumos": "sunos5",
    "solaris": "sunos5",
    "aix": "aix7",
}


@settings(max_examples=300, deadline=None)
@given(table=st.sampled_from(TABLES), ms=st.integers(min_value=1, max_value=10**10))
def test_detection_time_read_back_is_the_plans(table: PlatformTable, ms: int) -> None:
    """Settings.detection_time of the plan as the kernel would report it: within *ms*.

    Read back as get_settings() would on that system (an option the kernel
    cannot report is ``None``), evaluated there (``sys.platform``): the
    same ``idle + interval * probes`` the plan was built on, or ``None``
    where a term cannot be read back (NetBSD before 8, Windows before build 16299).
    """
    fewest = 1 if table.probes is not None else 10
    if ms < minimum_budget(table, fewest):
        return
    plan = plan_for(table, ms)

    def back(knob: str) -> int | None:
        opt = table.option(knob)
        value = plan[knob]  # type: ignore[literal-required]
        return value if opt is not None and opt.readable else None

    read_back = nk.Settings(
        True, back("idle"), back("interval"), back("probes"), back("user_timeout")
    )
    with mock.patch.object(sys, "platform", SYS_PLATFORM.get(table.name, "win32")):
        detection = read_back.detection_time
    readable = [table.option(k) for k in ("idle", "interval", "probes")]
    if all(opt is not None and opt.readable for opt in readable):
        assert plan["idle"] is not None
        assert plan["interval"] is not None
        assert plan["probes"] is not None
        assert detection == plan["idle"] + plan["interval"] * plan["probes"]
        assert detection is not None
        assert detection + detection * 8 / 63 <= ms
    else:
        assert detection is None


@pytest.mark.parametrize(
    ("platform", "expected"),
    [("linux", 15_000), ("android", 15_000), ("darwin", 25_000), ("freebsd14", 25_000)],
)
def test_user_timeout_shortens_detection_only_on_linux_kernels(
    platform: str, expected: int
) -> None:
    """Linux (Android too) drops at the first probe 12 s after the last data; elsewhere 3 probes."""
    with mock.patch.object(sys, "platform", platform):
        assert nk.Settings(True, 10_000, 5_000, 3, 12_000).detection_time == expected


def test_thirty_seconds_on_linux() -> None:
    # 30 s less the timer slack (8/63 of the detection time) leaves 26.6 s:
    # half of it probing in whole seconds, the rest idle.
    assert plan_for(c.LINUX, 30_000) == {
        "idle": 14_000,
        "interval": 4_000,
        "probes": 3,
        "user_timeout": 26_000,
    }


def test_four_and_eight_seconds_on_linux() -> None:
    assert plan_for(c.LINUX, 4_000) == {
        "idle": 1_000,
        "interval": 1_000,
        "probes": 2,
        "user_timeout": 3_000,
    }
    assert plan_for(c.LINUX, 8_000) == {
        "idle": 4_000,
        "interval": 1_000,
        "probes": 3,
        "user_timeout": 7_000,
    }


def test_short_budgets_use_fewer_probes_unless_told() -> None:
    # 2 s, 3 s and 4 s of detection need 2254, 3381 and 4508 ms of budget.
    assert plan_for(c.LINUX, 2_254)["probes"] == 1
    assert plan_for(c.LINUX, 3_380)["probes"] == 1
    assert plan_for(c.LINUX, 3_381)["probes"] == 2
    assert plan_for(c.LINUX, 4_508)["probes"] == 3
    with pytest.raises(ValueError, match="at least 4508 ms"):
        plan_for(c.LINUX, 4_507, probes=3)


def test_below_the_platform_minimum_names_it() -> None:
    with pytest.raises(ValueError, match=r"2253 ms is below .* at least 2254 ms"):
        plan_for(c.LINUX, 2_253)
    with pytest.raises(ValueError, match="at least 22540 ms"):
        plan_for(c.SOLARIS, 22_539)


def test_macos_user_timeout_allows_for_its_retransmission_check() -> None:
    # TCP_RXT_CONNDROPTIME is checked when a retransmission is due, counted
    # from the first one: half the detection time for short budgets...
    assert plan_for(c.DARWIN, 30_000) == {
        "idle": 14_000,
        "interval": 4_000,
        "probes": 3,
        "user_timeout": 13_000,
    }
    # ... and the detection time less one 64 s backoff (and a second) for long ones.
    plan = plan_for(c.DARWIN, 600_000)
    assert plan["idle"] is not None
    assert plan["interval"] is not None
    detection = plan["idle"] + 3 * plan["interval"]
    assert plan["user_timeout"] == (detection - 65_000) // 1000 * 1000
    # ... but never past xnu's own retransmission limit (12 retransmissions,
    # at most 832 s), which no longer TCP_RXT_CONNDROPTIME can extend.
    assert plan_for(c.DARWIN, 3_600_000)["user_timeout"] == XNU_RETRANSMIT_LIMIT == 832_000


@pytest.mark.parametrize("bad", [True, "30000", None, [30000]])
def test_budget_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="detect_within"):
        nk.detect_within(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 0.5, float("nan"), float("inf"), timedelta(0)])
def test_budget_value_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="detect_within"):
        nk.detect_within(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 128, -3])
def test_probe_count_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="TCP_KEEPCNT takes 1 to 127"):
        plan_for(c.LINUX, 60_000, probes=bad)


def test_probe_count_type() -> None:
    with pytest.raises(TypeError, match="probes"):
        plan_for(c.LINUX, 60_000, probes=2.0)  # type: ignore[arg-type]


def test_durations_of_every_type_agree() -> None:
    assert (
        plan_for(c.LINUX, 30_000)
        == plan_for(c.LINUX, 30_000.9)
        == plan_for(c.LINUX, timedelta(seconds=30))
    )


def test_platform_without_per_socket_knobs() -> None:
    with pytest.raises(nk.UnsupportedOptionError, match="openbsd"):
        plan_for(c.OPENBSD, 30_000)


def test_old_windows_counts_its_fixed_ten_probes() -> None:
    plan = plan_for(c.windows_table(10240), 30_000)
    assert plan["probes"] is None
    assert plan["idle"] is not None
    assert plan["interval"] is not None
    assert plan["idle"] + 10 * plan["interval"] <= 30_000


@linux_only
@pytest.mark.parametrize("budget", [2_254, 4_000, 8_000, 30_000, 30_999, 7_200_000])
def test_configured_socket_holds_the_plan(client: socket.socket, budget: int) -> None:
    plan = nk.detect_within(budget)
    settings_back = nk.configure(client, **plan)
    tcp = socket.IPPROTO_TCP
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert client.getsockopt(tcp, socket.TCP_KEEPIDLE) * 1000 == plan["idle"]
    assert client.getsockopt(tcp, socket.TCP_KEEPINTVL) * 1000 == plan["interval"]
    assert client.getsockopt(tcp, socket.TCP_KEEPCNT) == plan["probes"]
    assert client.getsockopt(tcp, socket.TCP_USER_TIMEOUT) == plan["user_timeout"]
    detection = settings_back.detection_time
    assert detection is not None
    assert detection + detection * 8 / 63 <= budget


@linux_only
def test_socket_options_take_the_plan() -> None:
    options = nk.socket_options(**nk.detect_within(30_000))
    tcp = socket.IPPROTO_TCP
    assert (tcp, socket.TCP_KEEPIDLE, 14) in options
    assert (tcp, socket.TCP_KEEPINTVL, 4) in options
    assert (tcp, socket.TCP_KEEPCNT, 3) in options
    assert (tcp, socket.TCP_USER_TIMEOUT, 26_000) in options


@pytest.mark.parametrize("budget", [0.5, 0.999, timedelta(microseconds=500)])
def test_a_budget_under_one_millisecond_is_named_so(budget: object) -> None:
    with pytest.raises(ValueError, match="is less than one millisecond") as info:
        nk.detect_within(budget)
    assert "positive" not in str(info.value)


@pytest.mark.parametrize("budget", [0, 0.0, -1, -0.5, timedelta(0)])
def test_a_budget_of_zero_or_less_must_be_positive(budget: object) -> None:
    with pytest.raises(ValueError, match="the budget must be positive"):
        nk.detect_within(budget)

"""Every public function on every simulated platform.

These systems cannot run here, so each test patches platform detection
(``sys.platform``, ``os.uname``, ``sys.getwindowsversion``) and replaces
the C library with the recorder of ``fakelib``, then checks the exact
(level, option, value, length) that reached the "kernel", the unit
conversion, the read-back and the errors.  The expected numbers are
written out here, from the reference table, not taken from the tables
under test.  Linux is tested on real sockets elsewhere.
"""

from __future__ import annotations

import errno
from typing import Any, Callable, NamedTuple, Optional, Tuple

import pytest
from helpers.fakelib import SIO_KEEPALIVE_VALS, Call
from helpers.fakelib import WRITE_ONLY as WRITE_ONLY_TABLES

import netkeepalive
from netkeepalive import UnsupportedOptionError

TCP = 6
BSD_ENABLE = (0xFFFF, 8)
SIO = (0, SIO_KEEPALIVE_VALS, "ms")
FD = 7

#: (level, option, unit) of a time option; (level, option) of the count.
Time = Optional[Tuple[int, int, str]]
Count = Optional[Tuple[int, int]]


class Case(NamedTuple):
    id: str
    platform: str
    release: str
    version: str
    build: Optional[int]
    table: str
    enable: Tuple[int, int]
    idle: Time
    interval: Time
    probes: Count
    user_timeout: Time


CASES = [
    Case("android", "android", "6.1.0", "#1", None, "android",
         (1, 9), (TCP, 4, "s"), (TCP, 5, "s"), (TCP, 6), (TCP, 18, "ms")),
    Case("macos", "darwin", "23.1.0", "Darwin Kernel Version 23.1.0", None, "darwin",
         BSD_ENABLE, (TCP, 16, "s"), (TCP, 257, "s"), (TCP, 258), (TCP, 128, "s")),
    Case("ios", "ios", "23.1.0", "Darwin Kernel Version 23.1.0", None, "darwin",
         BSD_ENABLE, (TCP, 16, "s"), (TCP, 257, "s"), (TCP, 258), (TCP, 128, "s")),
    Case("freebsd", "freebsd14", "14.1-RELEASE", "FreeBSD 14.1-RELEASE", None, "freebsd",
         BSD_ENABLE, (TCP, 256, "s"), (TCP, 512, "s"), (TCP, 1024), (TCP, 68, "s")),
    Case("freebsd-13", "freebsd13", "13.3-RELEASE", "FreeBSD 13.3-RELEASE", None,
         "freebsd-pre-14",
         BSD_ENABLE, (TCP, 256, "s"), (TCP, 512, "s"), (TCP, 1024), None),
    Case("dragonfly-6.4", "dragonfly6", "6.4-RELEASE", "DragonFly v6.4.0", None, "dragonfly",
         BSD_ENABLE, (TCP, 256, "s"), (TCP, 512, "s"), (TCP, 1024), None),
    Case("dragonfly-5.6", "dragonfly5", "5.6-RELEASE", "DragonFly v5.6.2", None,
         "dragonfly-pre-5.8",
         BSD_ENABLE, (TCP, 256, "dt"), (TCP, 512, "dt"), (TCP, 1024), None),
    Case("netbsd", "netbsd10", "10.0", "NetBSD 10.0 (GENERIC)", None, "netbsd",
         BSD_ENABLE, (TCP, 3, "t"), (TCP, 5, "t"), (TCP, 6), None),
    Case("netbsd-7", "netbsd7", "7.2", "NetBSD 7.2 (GENERIC)", None, "netbsd-pre-8",
         BSD_ENABLE, (TCP, 3, "t"), (TCP, 5, "t"), (TCP, 6), None),
    Case("openbsd", "openbsd7", "7.5", "GENERIC.MP#82", None, "openbsd",
         BSD_ENABLE, None, None, None, None),
    Case("illumos", "sunos5", "5.11", "omnios-r151046-2b8a7ab", None, "illumos",
         BSD_ENABLE, (TCP, 34, "s"), (TCP, 36, "s"), (TCP, 35), None),
    Case("solaris-11.4", "sunos5", "5.11", "11.4.0.15.0", None, "solaris",
         BSD_ENABLE, (TCP, 29, "s"), (TCP, 30, "s"), (TCP, 31), None),
    Case("solaris-11.3", "sunos5", "5.11", "11.3", None, "solaris-pre-11.4",
         BSD_ENABLE, (TCP, 22, "ms"), None, None, None),
    Case("solaris-10", "sunos5", "5.10", "Generic_150400-59", None, "solaris-pre-11.4",
         BSD_ENABLE, (TCP, 22, "ms"), None, None, None),
    Case("aix", "aix7", "3", "7", None, "aix",
         BSD_ENABLE, (TCP, 17, "s"), (TCP, 18, "s"), (TCP, 19), None),
    Case("windows-22631", "win32", "", "", 22631, "win32",
         BSD_ENABLE, (TCP, 3, "s"), (TCP, 17, "s"), (TCP, 16), (TCP, 14, "ms")),
    Case("windows-16299", "win32", "", "", 16299, "win32",
         BSD_ENABLE, (TCP, 3, "s"), (TCP, 17, "s"), (TCP, 16), (TCP, 14, "ms")),
    Case("windows-15063", "win32", "", "", 15063, "win32 (build 15063)",
         BSD_ENABLE, SIO, SIO, (TCP, 16), (TCP, 14, "ms")),
    Case("windows-14393", "win32", "", "", 14393, "win32 (build 14393)",
         BSD_ENABLE, SIO, SIO, None, (TCP, 14, "ms")),
    Case("windows-10240", "win32", "", "", 10240, "win32 (build 10240)",
         BSD_ENABLE, SIO, SIO, None, (TCP, 5, "s")),
]  # fmt: skip
CASE_IDS = [c.id for c in CASES]
#: Cases whose kernel takes the keepalive options but never reports them
#: (fakelib.WRITE_ONLY: NetBSD before 8.0).
WRITE_ONLY = {c.id for c in CASES if c.table in WRITE_ONLY_TABLES}

#: knob -> (setter, getter, a public value to set)
KNOB_API: dict[str, Tuple[Callable[..., bool], Callable[[Any], int], int]] = {
    "idle": (netkeepalive.set_keepalive_idle, netkeepalive.get_keepalive_idle, 12_345),
    "interval": (netkeepalive.set_keepalive_interval, netkeepalive.get_keepalive_interval, 14_321),
    "probes": (netkeepalive.set_keepalive_probes, netkeepalive.get_keepalive_probes, 9),
    "user_timeout": (netkeepalive.set_user_timeout, netkeepalive.get_user_timeout, 2_500),
}


def start(simulate: Callable[..., Any], case: Case, **kwargs: Any) -> Any:
    sim = simulate(
        case.platform, release=case.release, version=case.version, build=case.build, **kwargs
    )
    assert sim.backend.table.name == case.table
    return sim


#: Milliseconds per native unit: seconds, NetBSD's 500 ms ticks ("t"), ms,
#: and DragonFly's milliseconds before 5.8 ("dt"), kept as 10 ms ticks.
MS_PER = {"s": 1000, "t": 500, "ms": 1, "dt": 1}
#: Options whose getsockopt the simulated kernel answers, but whose value
#: netkeepalive does not report: Windows 1703's TCP_KEEPCNT, which the
#: SIO_KEEPALIVE_VALS ioctl after it may override (undocumented).
NOT_REPORTED = {("windows-15063", "probes")}
#: illumos reads the connection's retransmit bounds before TCP_KEEPINTVL.
RTO_BOUNDS = {0x1A, 0x1B}


def native(unit: str, ms: int) -> int:
    return ms // MS_PER[unit]


def public(unit: str, value: int) -> int:
    return value * MS_PER[unit]


def kept(unit: str, value: int) -> int:
    """What the kernel stores and answers: DragonFly before 5.8 keeps whole 10 ms ticks."""
    return value // 10 * 10 if unit == "dt" else value


def setsockopt_knobs() -> list[Tuple[Case, str]]:
    """(case, knob) for every knob a platform sets with setsockopt."""
    return [
        (case, knob)
        for case in CASES
        for knob in KNOB_API
        if getattr(case, knob) is not None and getattr(case, knob) != SIO
    ]


def missing_knobs() -> list[Tuple[Case, str]]:
    return [(case, knob) for case in CASES for knob in KNOB_API if getattr(case, knob) is None]


# -- setsockopt / getsockopt, exact arguments -------------------------------


@pytest.mark.parametrize(
    ("case", "knob"), setsockopt_knobs(), ids=[f"{c.id}-{k}" for c, k in setsockopt_knobs()]
)
def test_setter_passes_exact_arguments_and_getter_reads_back(
    simulate: Callable[..., Any], case: Case, knob: str
) -> None:
    sim = start(simulate, case)
    setter, getter, value = KNOB_API[knob]
    spec = getattr(case, knob)
    level, option = spec[0], spec[1]
    sent = value if knob == "probes" else native(spec[2], value)

    assert setter(FD, value) is True
    calls = [c for c in sim.kernel.calls if c.option not in RTO_BOUNDS or case.id != "illumos"]
    assert calls == [Call("setsockopt", FD, level, option, sent, 4)]

    sim.kernel.calls.clear()
    if case.id in WRITE_ONLY or (case.id, knob) in NOT_REPORTED:
        with pytest.raises(UnsupportedOptionError, match=r"getsockopt|read back"):
            getter(FD)
        assert sim.kernel.calls == []
        return
    back = getter(FD)
    answer = value if knob == "probes" else kept(spec[2], sent)
    assert sim.kernel.calls == [Call("getsockopt", FD, level, option, answer, 4)]
    assert back == (value if knob == "probes" else public(spec[2], answer))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_so_keepalive_on_off_and_read_back(simulate: Callable[..., Any], case: Case) -> None:
    sim = start(simulate, case)
    level, option = case.enable
    assert netkeepalive.set_keepalive(FD, True) is True
    assert netkeepalive.get_keepalive(FD) is True
    assert netkeepalive.set_keepalive(FD, False) is True
    assert netkeepalive.get_keepalive(FD) is False
    assert sim.kernel.calls == [
        Call("setsockopt", FD, level, option, 1, 4),
        Call("getsockopt", FD, level, option, 1, 4),
        Call("setsockopt", FD, level, option, 0, 4),
        Call("getsockopt", FD, level, option, 0, 4),
    ]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.idle not in (None, SIO)], ids=lambda c: str(c.id)
)
def test_set_keepalive_with_initial_delay_sets_idle_around_so_keepalive(
    simulate: Callable[..., Any], case: Case
) -> None:
    """Idle first (a refusal changes nothing), then SO_KEEPALIVE=1, then idle again."""
    sim = start(simulate, case)
    assert case.idle is not None
    level, option, unit = case.idle
    netkeepalive.set_keepalive(FD, True, 30_000)
    idle = Call("setsockopt", FD, level, option, native(unit, 30_000), 4)
    sets = [c for c in sim.kernel.calls if c.func != "getsockopt"]
    assert sets == [idle, Call("setsockopt", FD, *case.enable, 1, 4), idle]
    # What it changes is read first, to be written back if a write is refused.
    funcs = [c.func for c in sim.kernel.calls]
    assert "getsockopt" not in funcs[funcs.index(sets[0].func) :]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_configure_applies_everything_the_platform_has_and_reads_it_back(
    simulate: Callable[..., Any], case: Case
) -> None:
    sim = start(simulate, case)
    given = {
        knob: value for knob, (_, _, value) in KNOB_API.items() if getattr(case, knob) is not None
    }
    settings = netkeepalive.configure(FD, **given)  # type: ignore[arg-type]
    assert settings.enabled is True
    for knob in KNOB_API:
        spec = getattr(case, knob)
        got = getattr(settings, knob)
        if spec is None or spec == SIO or case.id in WRITE_ONLY or (case.id, knob) in NOT_REPORTED:
            assert got is None  # missing, or unreadable
        elif knob == "probes":
            assert got == given[knob]
        else:
            assert got == public(spec[2], kept(spec[2], native(spec[2], given[knob])))
    sets = [call for call in sim.kernel.calls if call.func != "getsockopt"]
    enable = Call("setsockopt", FD, *case.enable, 1, 4)
    if case.idle is None:
        assert sets[-1] == enable
        assert len(sets) == len(given) + 1
    else:  # then SO_KEEPALIVE=1, then the idle time once more
        assert sets[-2] == enable
        assert sets[-1] == sets[-3]
        assert sets[-1].option == case.idle[1]
        assert len(sets) == len(given) + 2
    if case.id in WRITE_ONLY:  # nothing asked that the kernel cannot answer
        # SO_KEEPALIVE before the writes (to put back) and in the read-back.
        assert [c.option for c in sim.kernel.calls if c.func == "getsockopt"] == [8, 8]


# -- options a platform lacks -------------------------------------------------


@pytest.mark.parametrize(
    ("case", "knob"), missing_knobs(), ids=[f"{c.id}-{k}" for c, k in missing_knobs()]
)
def test_missing_option_raises_and_touches_nothing(
    simulate: Callable[..., Any], case: Case, knob: str
) -> None:
    sim = start(simulate, case)
    setter, getter, value = KNOB_API[knob]
    for call in (lambda: setter(FD, value), lambda: getter(FD)):
        with pytest.raises(UnsupportedOptionError) as info:
            call()
        exc = info.value
        assert isinstance(exc, OSError)
        assert exc.errno == errno.ENOPROTOOPT
        assert knob in str(exc)
        assert case.table in str(exc)
    with pytest.raises(UnsupportedOptionError):
        netkeepalive.configure(FD, **{knob: value})  # type: ignore[arg-type]
    assert sim.kernel.calls == []
    assert getattr(netkeepalive.get_settings(FD), knob) is None


# -- units ------------------------------------------------------------------

CASE = {c.id: c for c in CASES}


def test_macos_user_timeout_goes_in_seconds(simulate: Callable[..., Any]) -> None:
    sim = start(simulate, CASE["macos"])
    netkeepalive.set_user_timeout(FD, 1_999)
    netkeepalive.set_user_timeout(FD, 0)
    netkeepalive.set_user_timeout(FD, 4_294_967_999)
    assert [c.value for c in sim.kernel.calls] == [1, 0, 4_294_967]
    assert netkeepalive.get_user_timeout(FD) == 4_294_967_000
    sim.kernel.calls.clear()
    for bad in (999, 4_294_968_000):
        with pytest.raises(ValueError, match="TCP_RXT_CONNDROPTIME"):
            netkeepalive.set_user_timeout(FD, bad)
    assert sim.kernel.calls == []


@pytest.mark.parametrize(
    ("case_id", "ms", "sent"),
    [("dragonfly-5.6", 1_500, 1_500), ("dragonfly-5.6", 999, 999), ("dragonfly-6.4", 1_500, 1)],
)
def test_dragonfly_unit_follows_the_release(
    simulate: Callable[..., Any], case_id: str, ms: int, sent: int
) -> None:
    sim = start(simulate, CASE[case_id])
    netkeepalive.set_keepalive_interval(FD, ms)
    assert sim.kernel.calls == [Call("setsockopt", FD, TCP, 512, sent, 4)]


def test_dragonfly_5_8_refuses_under_a_second(simulate: Callable[..., Any]) -> None:
    start(simulate, CASE["dragonfly-6.4"])
    with pytest.raises(ValueError, match="less than one second"):
        netkeepalive.set_keepalive_interval(FD, 999)


def test_solaris_before_11_4_takes_the_millisecond_threshold(
    simulate: Callable[..., Any],
) -> None:
    sim = start(simulate, CASE["solaris-11.3"])
    netkeepalive.set_keepalive_idle(FD, 10_500)
    assert sim.kernel.calls == [Call("setsockopt", FD, TCP, 22, 10_500, 4)]
    assert netkeepalive.get_keepalive_idle(FD) == 10_500
    with pytest.raises(ValueError, match=r"TCP_KEEPALIVE_THRESHOLD takes 10000 to 864000000 ms"):
        netkeepalive.set_keepalive_idle(FD, 9_999)


def test_solaris_11_4_keepidle_range(simulate: Callable[..., Any]) -> None:
    sim = start(simulate, CASE["solaris-11.4"])
    with pytest.raises(ValueError, match="TCP_KEEPIDLE takes 10 to 864000 whole seconds"):
        netkeepalive.set_keepalive_idle(FD, 9_999)
    netkeepalive.set_keepalive_idle(FD, 10_000)
    assert sim.kernel.calls == [Call("setsockopt", FD, TCP, 29, 10, 4)]


# -- illumos: TCP_KEEPIDLE missing -> TCP_KEEPALIVE_THRESHOLD ----------------


@pytest.mark.parametrize("refusal", [errno.ENOPROTOOPT, errno.EINVAL])
def test_illumos_without_keepidle_falls_back_to_threshold(
    simulate: Callable[..., Any], refusal: int
) -> None:
    sim = start(simulate, CASE["illumos"])
    sim.kernel.known.discard((TCP, 34))
    sim.kernel.unknown_errno = refusal
    assert netkeepalive.set_keepalive_idle(FD, 20_000) is True
    tried = [Call("setsockopt", FD, TCP, 34, 20, 4)]
    if refusal == errno.EINVAL:  # EINVAL: is the option unknown, or the value bad?
        tried.append(Call("getsockopt", FD, TCP, 34, None, 4))
    assert sim.kernel.calls == [*tried, Call("setsockopt", FD, TCP, 22, 20_000, 4)]

    sim.kernel.calls.clear()
    assert netkeepalive.get_keepalive_idle(FD) == 20_000
    assert sim.kernel.calls == [
        Call("getsockopt", FD, TCP, 34, None, 4),
        Call("getsockopt", FD, TCP, 22, 20_000, 4),
    ]
    assert netkeepalive.get_settings(FD).idle == 20_000


def test_illumos_idle_range_is_checked_before_either_option(
    simulate: Callable[..., Any],
) -> None:
    """TCP_KEEPIDLE and its fallback share the kernel's 1 s .. 10 days range (OS-4686)."""
    sim = start(simulate, CASE["illumos"])
    sim.kernel.known.discard((TCP, 34))
    with pytest.raises(ValueError, match="TCP_KEEPIDLE takes 1 to 864000 whole seconds"):
        netkeepalive.set_keepalive_idle(FD, 999)
    assert sim.kernel.calls == []


def test_illumos_value_refused_by_a_known_keepidle_is_not_retried(
    simulate: Callable[..., Any],
) -> None:
    sim = start(simulate, CASE["illumos"])
    sim.kernel.accepts[TCP, 34] = lambda seconds: seconds >= 20  # a stricter kernel
    with pytest.raises(OSError, match=r"setsockopt\(TCP_KEEPIDLE\)") as info:
        netkeepalive.set_keepalive_idle(FD, 15_000)
    assert info.value.errno == errno.EINVAL
    assert [(c.func, c.option) for c in sim.kernel.calls] == [
        ("setsockopt", 34),
        ("getsockopt", 34),
    ]


def test_illumos_with_keepidle_never_touches_the_threshold(simulate: Callable[..., Any]) -> None:
    sim = start(simulate, CASE["illumos"])
    netkeepalive.set_keepalive_idle(FD, 15_000)
    assert netkeepalive.get_keepalive_idle(FD) == 15_000
    assert {c.option for c in sim.kernel.calls} == {34}


def test_other_kernel_errors_are_not_retried(simulate: Callable[..., Any]) -> None:
    sim = start(simulate, CASE["illumos"])
    sim.kernel.failures["setsockopt", TCP, 34] = errno.EBADF
    with pytest.raises(OSError, match=r"setsockopt\(TCP_KEEPIDLE\): \[Errno 9\]"):
        netkeepalive.set_keepalive_idle(FD, 20_000)
    assert len(sim.kernel.calls) == 1


def test_unix_errno_reaches_the_caller(simulate: Callable[..., Any]) -> None:
    sim = start(simulate, CASE["freebsd"])
    sim.kernel.failures["setsockopt", TCP, 512] = errno.ECONNRESET
    with pytest.raises(OSError, match=r"^setsockopt\(TCP_KEEPINTVL\): ") as info:
        netkeepalive.set_keepalive_interval(FD, 5_000)
    assert info.value.errno == errno.ECONNRESET

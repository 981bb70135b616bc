"""Every row of tests/data/tcp-keepalive-constants.tsv against the option tables.

Each row names a C macro for one OS (and, on Linux, a CPU architecture).
The row is resolved to every place netkeepalive keeps that number: the
option a knob uses (or its fallback, or a table's extras), ``SOL_SOCKET``
and ``IPPROTO_TCP`` as those options' levels, ``MAX_*`` as an option's
maximum, ``TCP_INFO``/``TCP_CONNECTION_INFO`` as ``PlatformTable.tcp_info``,
and Windows' ioctl codes as module constants.  A row that resolves to
nothing fails: no row is skipped.  The reverse check makes sure no table
holds a name the reference does not list.
"""

from __future__ import annotations

import csv
import socket
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from netkeepalive import constants as c
from netkeepalive.constants import KNOBS, Option, PlatformTable, Unit

TSV = Path(__file__).parent / "data" / "tcp-keepalive-constants.tsv"
UNITS = {
    "seconds": Unit.SECONDS,
    "milliseconds": Unit.MILLISECONDS,
    "count": Unit.COUNT,
    "flag": Unit.FLAG,
}
#: Units the reference's caveats give where the unit column does not:
#: DragonFly took milliseconds before 5.8, and NetBSD's kernel stores the
#: documented seconds unscaled as 500 ms slow-timer ticks.
CAVEAT_UNITS = {
    ("dragonfly-pre-5.8", "TCP_KEEPIDLE"): Unit.MILLISECONDS,
    ("dragonfly-pre-5.8", "TCP_KEEPINTVL"): Unit.MILLISECONDS,
    ("netbsd", "TCP_KEEPIDLE"): Unit.HALF_SECONDS,
    ("netbsd", "TCP_KEEPINTVL"): Unit.HALF_SECONDS,
    ("netbsd-pre-8", "TCP_KEEPIDLE"): Unit.HALF_SECONDS,
    ("netbsd-pre-8", "TCP_KEEPINTVL"): Unit.HALF_SECONDS,
}
#: Linux architectures the reference names, plus "generic".
LINUX_ARCHES = ("generic", "mips", "sparc", "parisc", "alpha")
#: Windows builds on either side of every version limit.
WINDOWS_BUILDS = (10240, 14393, 15063, 16299, 22631)


class Row(NamedTuple):
    os: str
    arch: str
    name: str
    value: int
    unit: str
    line: int


def read_rows() -> List[Row]:
    with TSV.open(newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        assert reader.fieldnames == ["os", "arch", "name", "value", "unit", "source"]
        return [
            Row(r["os"], r["arch"], r["name"], int(r["value"]), r["unit"], n)
            for n, r in enumerate(reader, start=2)
        ]


ROWS = read_rows()


def variants(os_name: str, arch: str) -> List[PlatformTable]:
    """Every table netkeepalive may use on *os_name* (run-time variants included)."""
    if os_name == "linux":
        if arch == "all":
            return [c.linux_table(a if a != "generic" else "") for a in LINUX_ARCHES] + [c.LINUX]
        return [c.linux_table("" if arch == "generic" else arch)]
    assert arch == "all", f"only Linux rows name an architecture, not {os_name}"
    return {
        "android": [c.ANDROID, c.table_for("android")],
        "macos": [c.DARWIN],
        "freebsd": [c.FREEBSD, c.FREEBSD_PRE_14],
        "dragonfly": [c.DRAGONFLY, c.DRAGONFLY_PRE_5_8],
        "netbsd": [c.NETBSD, c.NETBSD_PRE_8],
        "openbsd": [c.OPENBSD],
        "illumos": [c.ILLUMOS],
        "solaris": [c.SOLARIS, c.SOLARIS_PRE_11_4],
        "aix": [c.AIX],
        "windows": [c.windows_table(b) for b in WINDOWS_BUILDS] + [c.WINDOWS],
    }[os_name]


def options(table: PlatformTable) -> Iterator[Option]:
    """Every option of *table*: the knobs', their fallbacks, the extras."""
    for knob in KNOBS:
        opt = table.option(knob)
        while opt is not None:
            yield opt
            opt = opt.fallback
    yield from table.extras


def tcp_options(table: PlatformTable) -> List[Option]:
    """The options set at ``IPPROTO_TCP`` (not ``SO_KEEPALIVE``, not ioctls)."""
    return [o for o in options(table) if o.knob != "enable" and o.level != 0]


#: What a row resolves to: (table, where, number, unit or None for "-").
Found = Tuple[str, str, int, Optional[Unit]]


def resolve(row: Row) -> List[Found]:
    found: List[Found] = []
    for table in variants(row.os, row.arch):
        t = table.name
        if row.name == "SOL_SOCKET":
            found += [
                (t, "SO_KEEPALIVE level", o.level, None)
                for o in options(table)
                if o.knob == "enable"
            ]
        elif row.name == "IPPROTO_TCP":
            found += [(t, f"{o.name} level", o.level, None) for o in tcp_options(table)]
            found.append((t, "constants.IPPROTO_TCP", c.IPPROTO_TCP, None))
        elif row.name.startswith("MAX_"):
            found += [
                (t, f"{o.name} maximum", o.maximum, o.unit)
                for o in options(table)
                if o.name == row.name[len("MAX_") :]
            ]
        elif table.tcp_info is not None and row.name == table.tcp_info_name:
            found.append((t, "tcp_info", table.tcp_info, None))
        else:
            found += [
                (t, f"{o.name} ({o.knob or 'extra'})", o.number, o.unit)
                for o in options(table)
                if o.name == row.name
            ]
    module_value = getattr(c, row.name, None)
    if row.os == "windows" and isinstance(module_value, int):
        found.append(("windows", f"constants.{row.name}", module_value, None))
    return found


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.os}-{r.arch}-{r.name}" for r in ROWS])
def test_row_matches_tables(row: Row) -> None:
    found = resolve(row)
    assert found, f"line {row.line}: {row.os}/{row.arch} {row.name} is in no table"
    for table, where, number, unit in found:
        assert number == row.value, f"line {row.line}: {table} {where} is {number}"
        if unit is not None:
            expected = CAVEAT_UNITS.get((table, row.name), UNITS[row.unit])
            assert unit is expected, f"line {row.line}: {table} {where} is in {unit.value}"


def test_every_os_of_the_reference_has_tables() -> None:
    oses = {r.os for r in ROWS}
    assert oses == {
        "linux", "android", "macos", "freebsd", "dragonfly", "netbsd", "openbsd",
        "illumos", "solaris", "aix", "windows",
    }  # fmt: skip
    for os_name in oses:
        assert variants(os_name, "all")


def reference_names() -> Dict[str, set[str]]:
    names: Dict[str, set[str]] = {}
    for r in ROWS:
        names.setdefault(r.os, set()).add(r.name)
    return names


@pytest.mark.parametrize("os_name", sorted(reference_names()))
def test_no_table_holds_a_name_missing_from_the_reference(os_name: str) -> None:
    listed = reference_names()[os_name]
    for table in variants(os_name, "all"):
        for opt in options(table):
            assert opt.name in listed, f"{table.name}: {opt.name} is not in the reference"
        if table.tcp_info is not None:
            assert table.tcp_info_name in listed


def test_limits_reach_the_reference_maximum() -> None:
    """Rows naming a limit (MAX_TCP_KEEPCNT, ...) are the option's maximum, exactly."""
    limits = [r for r in ROWS if r.name.startswith("MAX_")]
    assert limits
    for row in limits:
        assert all(number == row.value for _, _, number, _ in resolve(row))


@pytest.mark.parametrize(
    ("machine", "bsd_style"),
    [
        ("x86_64", False),
        ("aarch64", False),
        ("ppc64le", False),
        ("s390x", False),
        ("riscv64", False),
        ("armv7l", False),
        ("mips", True),
        ("mips64", True),
        ("mipsel", True),
        ("sparc64", True),
        ("parisc64", True),
        ("alpha", True),
    ],
)
def test_linux_uname_machine_picks_the_arch_row(machine: str, bsd_style: bool) -> None:
    arch_rows = {
        r.name: r.value
        for r in ROWS
        if r.os == "linux" and r.arch == ("mips" if bsd_style else "generic")
    }
    enable = c.linux_table(machine).enable
    assert enable is not None
    assert (enable.level, enable.number) == (arch_rows["SOL_SOCKET"], arch_rows["SO_KEEPALIVE"])


def test_running_linux_table_uses_the_socket_module_numbers() -> None:
    if not hasattr(socket, "SO_KEEPALIVE"):
        pytest.skip("this interpreter's socket module has no SO_KEEPALIVE")
    table = c._running_linux_table()
    assert table.enable is not None
    assert (table.enable.level, table.enable.number) == (socket.SOL_SOCKET, socket.SO_KEEPALIVE)

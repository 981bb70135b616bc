"""The platform support table of README.rst and the docs, made from the tables.

``python -m netkeepalive._support`` prints it; a test checks that README.rst
holds exactly this text, so the documentation cannot drift from
:mod:`netkeepalive.constants`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from . import constants as c
from .constants import KNOBS, Option, PlatformTable, Unit

__all__ = ["platform_rows", "support_table"]

_UNIT_TEXT = {
    Unit.SECONDS: "seconds",
    Unit.HALF_SECONDS: "500 ms ticks",
    Unit.MILLISECONDS: "ms",
    Unit.COUNT: "count",
    Unit.FLAG: "flag",
}
UNSUPPORTED = "unsupported (raises)"


def platform_rows() -> List[Tuple[str, PlatformTable]]:
    """(label, table) for every row of the support table."""
    k_idle, k_cnt, k_rtms = (
        c.WINDOWS_BUILD_KEEPIDLE,
        c.WINDOWS_BUILD_KEEPCNT,
        c.WINDOWS_BUILD_MAXRTMS,
    )
    return [
        ("Linux", c.LINUX),
        ("Android", c.ANDROID),
        ("macOS, iOS", c.DARWIN),
        ("FreeBSD 14+", c.FREEBSD),
        ("FreeBSD before 14", c.FREEBSD_PRE_14),
        ("DragonFly 5.8+", c.DRAGONFLY),
        ("DragonFly before 5.8", c.DRAGONFLY_PRE_5_8),
        ("NetBSD 8+", c.NETBSD),
        ("NetBSD before 8", c.NETBSD_PRE_8),
        ("OpenBSD", c.OPENBSD),
        ("illumos", c.ILLUMOS),
        ("Solaris 11.4+", c.SOLARIS),
        ("Solaris before 11.4", c.SOLARIS_PRE_11_4),
        ("AIX", c.AIX),
        (f"Windows build {k_idle}+ (10 1709)", c.windows_table(k_idle)),
        (f"Windows build {k_cnt} to {k_idle - 1}", c.windows_table(k_cnt)),
        (f"Windows build {k_rtms} to {k_cnt - 1}", c.windows_table(k_rtms)),
        (f"Windows before build {k_rtms}", c.windows_table(k_rtms - 1)),
    ]


def _cell(opt: Optional[Option]) -> str:
    if opt is None:
        return UNSUPPORTED
    text = f"``{opt.name}`` ({_UNIT_TEXT[opt.unit]})"
    if opt.fallback is not None:
        text += f", else {_cell(opt.fallback)}"
    return text


def _read_back(table: PlatformTable) -> str:
    present = [k for k in KNOBS if table.option(k) is not None]
    unreadable = [k for k in present if not table.option(k).readable]  # type: ignore[union-attr]
    if not unreadable:
        return "yes (``getsockopt``)"
    names = sorted({table.option(k).name for k in unreadable})  # type: ignore[union-attr]
    return f"all but {', '.join(unreadable)} (``{'``, ``'.join(names)}`` cannot be read)"


def support_table() -> str:
    """The support table as a reStructuredText ``list-table``."""
    header = ["platform", "enable", "idle", "interval", "probes", "user timeout", "read-back"]
    lines = [".. list-table::", "   :header-rows: 1", "   :stub-columns: 1", ""]
    rows = [header]
    for label, table in platform_rows():
        rows.append([label, *(_cell(table.option(k)) for k in KNOBS), _read_back(table)])
    for row in rows:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(support_table(), end="")

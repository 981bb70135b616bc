"""README.rst's platform support table is the one the option tables make."""

from __future__ import annotations

from pathlib import Path

from netkeepalive import constants
from netkeepalive._support import UNSUPPORTED, platform_rows, support_table

ROOT = Path(__file__).resolve().parent.parent


def between(text: str, start: str, end: str) -> str:
    assert text.count(start) == 1, start
    assert text.count(end) == 1, end
    return text.split(start, 1)[1].split(end, 1)[0]


def test_readme_table_matches_the_tables() -> None:
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    table = between(readme, ".. support-table-start\n", ".. support-table-end\n")
    assert table.strip() == support_table().strip(), (
        "README.rst's platform table is out of date: replace it with the output of "
        "`python -m netkeepalive._support`"
    )


def test_docs_page_includes_the_readme_section() -> None:
    page = (ROOT / "docs" / "platforms.rst").read_text(encoding="utf-8")
    assert ":start-after: .. platforms-start" in page
    assert ":end-before: .. platforms-end" in page
    index = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    assert "   platforms\n" in index


def test_every_table_has_a_row_and_every_gap_says_it_raises() -> None:
    rows = platform_rows()
    tables = {table.name for _, table in rows}
    named = {"linux", "android", "darwin", "freebsd", "dragonfly", "dragonfly-pre-5.8"}
    named |= {"netbsd", "netbsd-pre-8", "openbsd", "illumos", "solaris", "solaris-pre-11.4"}
    named |= {"aix", "win32"}
    assert named <= tables
    text = support_table()
    for _, table in rows:
        for knob in constants.KNOBS:
            opt = table.option(knob)
            assert (f"``{opt.name}``" if opt else UNSUPPORTED) in text
    # OpenBSD: four gaps in its row.
    openbsd = text.split("   * - OpenBSD\n", 1)[1].split("   * - ", 1)[0]
    assert openbsd.count(UNSUPPORTED) == 4

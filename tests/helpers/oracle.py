"""The independent oracle: tests/data/kernel-rules.tsv, read as rows.

What each real kernel does with each keepalive option, read from its own
source (one row per system, releases and option, each with its citation).
The simulated kernels (:mod:`fakelib`) refuse what this file says, never
what netkeepalive's own tables say, so a wrong table row fails a test.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1

#: The independent oracle: what each real kernel does with each option, read
#: from its own source (one row per system, releases and option, each with
#: its citation).  The simulated kernels refuse what this file says, never
#: what netkeepalive's own tables say, so a wrong table row fails a test.
RULES_FILE = Path(__file__).resolve().parent.parent / "data" / "kernel-rules.tsv"


@dataclass(frozen=True)
class Rule:
    """One row of :data:`RULES_FILE`."""

    system: str
    releases: str
    option: str
    level: Optional[int]
    number: Optional[int]
    unit: str
    minimum: Optional[int]
    maximum: Optional[int]
    readable: bool
    rule: str
    source: str

    @property
    def key(self) -> Tuple[str, str, str]:
        return (self.system, self.releases, self.option)

    @property
    def unsigned(self) -> bool:
        """A ``u_int`` option: a negative C int arrives as a huge value."""
        return self.maximum is not None and self.maximum > INT_MAX

    def accepts(self, value: int) -> bool:
        """Whether the kernel takes *value* (the C ``int`` that reached it)."""
        if self.unsigned:
            value &= UINT_MAX
        if self.minimum is not None and value < self.minimum:
            return False
        return self.maximum is None or value <= self.maximum


def _number(text: str) -> Optional[int]:
    return None if text == "-" else int(text)


def load_rules(path: Path = RULES_FILE) -> List[Rule]:
    """Every row of the oracle, in file order."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and ln[0] != "#"]
    rows = list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [
        Rule(
            r["system"],
            r["releases"],
            r["option"],
            _number(r["level"]),
            _number(r["number"]),
            r["unit"],
            _number(r["min"]),
            _number(r["max"]),
            r["readable"] == "yes",
            r["rule"],
            r["source"],
        )
        for r in rows
    ]


RULES = load_rules()

#: netkeepalive table name -> (the oracle's system, the release ranges that
#: apply).  Windows tables depend on the build: see :func:`rules_for`.
TABLE_RULES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "linux": ("linux", ("all",)),
    "android": ("linux", ("all",)),
    "darwin": ("macos", ("xnu-2422+", "xnu-1699+")),
    "freebsd": ("freebsd", ("all", "14.0+")),
    "freebsd-pre-14": ("freebsd", ("all",)),
    "dragonfly": ("dragonfly", ("all", "5.8+")),
    "dragonfly-pre-5.8": ("dragonfly", ("all", "pre-5.8")),
    "netbsd": ("netbsd", ("8+",)),
    "netbsd-pre-8": ("netbsd", ("pre-8",)),
    "openbsd": ("openbsd", ("all",)),
    "illumos": ("illumos", ("all", "OS-4686+")),
    "solaris": ("solaris", ("11.4+",)),
}


def _windows_build(table_name: str) -> Optional[int]:
    """16299 for "win32", N for "win32 (build N)", ``None`` for other tables."""
    if table_name == "win32":
        return 16299
    match = re.fullmatch(r"win32 \(build (\d+)\)", table_name)
    return int(match.group(1)) if match else None


def rules_for(table_name: str) -> List[Rule]:
    """The oracle's rows for the kernel netkeepalive's table *table_name* runs on."""
    build = _windows_build(table_name)
    if build is not None:
        return [
            r
            for r in RULES
            if r.system == "windows"
            and (r.releases == "all" or build >= int(r.releases.rstrip("+")))
        ]
    system, releases = TABLE_RULES.get(table_name, ("", ()))
    return [r for r in RULES if r.system == system and r.releases in releases]


def tables_for(rule: Rule) -> List[str]:
    """The netkeepalive table names whose simulated kernel applies *rule*."""
    if rule.system == "windows":
        names = ["win32 (build 14393)", "win32 (build 15063)", "win32"]
        return [n for n in names if rule in rules_for(n)]
    return [name for name in TABLE_RULES if rule in rules_for(name)]

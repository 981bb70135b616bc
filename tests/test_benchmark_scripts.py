"""The benchmark scripts run against this checkout (no timing is judged here).

CI runs them with its own figures; this keeps a rename inside the package
from breaking one unnoticed (each script reaches into private modules to
time what a user cannot isolate).  ``--report-only``: a missed target is
the script's report, not a failure; a traceback or non-zero exit is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

pytestmark = pytest.mark.skipif(
    not BENCHMARKS.is_dir(), reason="the benchmarks are not part of this tree"
)

SCRIPTS = [
    ("bench.py", ["--repeat", "1", "--number", "5", "--import-runs", "1"]),
    ("bench_install.py", ["--repeat", "1", "--number", "5", "--connections", "3"]),
]
if sys.platform.startswith("linux"):
    SCRIPTS.append(
        ("cli_scale.py", ["--sizes", "5", "--repeat", "1", "--idle-processes", "0", "--no-netns"])
    )


@pytest.mark.parametrize(("script", "args"), SCRIPTS, ids=[s for s, _ in SCRIPTS])
def test_script_runs_to_its_report(script: str, args: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--report-only"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
        env=env,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), "the script printed no report"

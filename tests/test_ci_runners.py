"""The CI workflow would run: actions on a supported runtime, pairs that exist, both FreeBSDs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _actionlint() -> str | None:
    beside = Path(sys.executable).with_name("actionlint")
    return str(beside) if beside.exists() else shutil.which("actionlint")


def test_actionlint_accepts_the_workflow() -> None:
    """Deprecated action runtimes (node20), unknown runner labels, bad expressions."""
    linter = _actionlint()
    if linter is None:
        pytest.skip("actionlint is not installed (the lint extra installs it)")
    done = subprocess.run([linter, str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_freebsd_runs_both_tables_on_pinned_releases() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    match = re.search(r"release: \[([^\]]*)\]", text)
    assert match, "the FreeBSD job has no pinned release list"
    releases = [tuple(map(int, r.strip(' "').split("."))) for r in match.group(1).split(",")]
    assert any(r < (14,) for r in releases)  # freebsd-pre-14: no TCP_MAXUNACKTIME
    assert any(r >= (14,) for r in releases)  # freebsd: TCP_MAXUNACKTIME
    assert "release: ${{ matrix.release }}" in text


def test_python_39_on_macos_runs_on_an_intel_image() -> None:
    """setup-python has no Python 3.9 for arm64 macOS, which macos-latest is."""
    text = WORKFLOW.read_text(encoding="utf-8")
    exclude = text.split("exclude:", 1)[1].split("include:", 1)[0]
    assert re.search(r'os: macos-latest\s+python: "3.9"', exclude)
    include = text.split("include:", 1)[1]
    assert re.search(r'os: macos-[0-9]+-intel\s+python: "3.9"', include)

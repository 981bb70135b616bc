"""The CI workflow for other systems runs README.rst's own install and test commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def readme_commands() -> list[str]:
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    section = readme.split("Running the tests\n", 1)[1].split("\nAPI\n", 1)[0]
    return re.findall(r"^\s+\$ (.+)$", section, re.M)


def test_workflow_uses_the_readme_commands_on_every_system() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    install, test = readme_commands()
    assert install == 'python -m pip install -e ".[test]"'
    assert test == "python -m pytest"
    # The matrix job and the FreeBSD job each install and test exactly that
    # way: every pip or pytest line is one of the README's two commands.
    lines = [line.strip().removeprefix("run: ") for line in text.splitlines()]
    assert lines.count(install) == 2
    assert lines.count(test) == 2
    for line in lines:
        if "pip install" in line or "pytest" in line:
            assert line in (install, test), line
    for runner in ("ubuntu-latest", "macos-latest", "windows-latest"):
        assert runner in text
    assert 'python: ["3.9", "3.13"]' in text
    assert "freebsd-vm" in text
    assert "python -m netkeepalive demo" in text
    assert "\t" not in text  # YAML forbids tabs for indentation

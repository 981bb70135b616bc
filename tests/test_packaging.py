"""What a release ships: one version everywhere, the license, and an sdist
that carries everything its own test suite, docs and tox need.

The sdist is built with the project's build backend from a copy of the
project's files (what a fresh clone has), and the wheel from the unpacked
sdist, the way a release is built.  .ci/run goes further: it installs the
sdist in a new virtual environment and runs the unpacked test suite.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from importlib import metadata
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

import netkeepalive

pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parent.parent
VERSION = netkeepalive.__version__

#: Files a user of the sdist needs, whatever else the repository holds.
REQUIRED = [
    "LICENSE",
    "README.rst",
    "CHANGELOG.rst",
    "tox.ini",
    "pyproject.toml",
    "MANIFEST.in",
    "tests/conftest.py",
    "tests/helpers/fakelib.py",
    "tests/data/tcp-keepalive-constants.tsv",
    "tests/integrations/conftest.py",
    "docs/conf.py",
    "docs/index.rst",
    "docs/changelog.rst",
    ".github/workflows/ci.yml",
]


def project_files() -> list[str]:
    """The project's files, relative to the top: those git tracks in a
    checkout, those the sdist was made of in an unpacked sdist."""
    git = shutil.which("git")
    if git:
        top = subprocess.run(
            [git, "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True
        )
        if top.returncode == 0 and Path(top.stdout.strip()).resolve() == ROOT:
            listed = subprocess.run(
                [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
            ).stdout.decode()
            return sorted(name for name in listed.split("\0") if (ROOT / name).is_file())
    sources = sorted(ROOT.glob("*.egg-info/SOURCES.txt"))
    if not sources:
        pytest.skip("neither a git checkout nor an unpacked sdist: no list of the project's files")
    names = sources[0].read_text(encoding="utf-8").split()
    return sorted(name for name in names if ".egg-info/" not in name)


class Built(NamedTuple):
    sdist: Path
    wheel: Path
    output: str  # everything the two builds printed


def _backend(hook: str, source: Path, outdir: Path) -> str:
    """Run setuptools' PEP 517 *hook* in *source*, in a fresh interpreter
    with the default warning filters, as a build front end does."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    result = subprocess.run(
        [sys.executable, "-c", f"import setuptools.build_meta as b; b.{hook}({str(outdir)!r})"],
        cwd=source,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{hook} failed:\n{result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    assert major >= 77, (
        f"setuptools {setuptools.__version__} cannot build license expressions: "
        'install the test extra (python -m pip install -e ".[test]")'
    )
    work = tmp_path_factory.mktemp("release")
    checkout = work / "checkout"
    for name in project_files():
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    dist = work / "dist"
    dist.mkdir()
    output = _backend("build_sdist", checkout, dist)
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.12, backported to 3.9.17
            archive.extractall(work / "unpacked", filter="data")
        else:
            archive.extractall(work / "unpacked")
    (unpacked,) = (work / "unpacked").iterdir()
    output += _backend("build_wheel", unpacked, dist)
    (wheel,) = dist.glob("*.whl")
    return Built(sdist, wheel, output)


def sdist_names(built: Built) -> set[str]:
    with tarfile.open(built.sdist) as archive:
        members = archive.getmembers()
    prefix = f"netkeepalive-{VERSION}/"
    assert all(member.name.startswith(prefix) for member in members if member.isfile())
    return {member.name[len(prefix) :] for member in members if member.isfile()}


def sdist_metadata(built: Built) -> Message:
    with tarfile.open(built.sdist) as archive:
        member = archive.extractfile(f"netkeepalive-{VERSION}/PKG-INFO")
        assert member is not None
        return email.message_from_bytes(member.read())


def wheel_metadata(built: Built) -> Message:
    with zipfile.ZipFile(built.wheel) as archive:
        return email.message_from_bytes(archive.read(f"netkeepalive-{VERSION}.dist-info/METADATA"))


def test_the_project_has_the_files_a_release_needs() -> None:
    missing = [name for name in REQUIRED if name not in project_files()]
    assert not missing


def test_sdist_carries_every_project_file(built: Built) -> None:
    names = sdist_names(built)
    missing = sorted(set(project_files()) - names)
    assert not missing, f"MANIFEST.in leaves these out of the sdist: {missing}"
    junk = sorted(name for name in names if "__pycache__" in name or name.endswith(".pyc"))
    assert not junk


def test_wheel_ships_the_license_and_the_package_only(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = archive.namelist()
        license_name = f"netkeepalive-{VERSION}.dist-info/licenses/LICENSE"
        assert license_name in names
        assert archive.read(license_name) == (ROOT / "LICENSE").read_bytes()
    dist_info = f"netkeepalive-{VERSION}.dist-info/"
    others = [n for n in names if not n.startswith(("netkeepalive/", dist_info))]
    assert not others
    assert "netkeepalive/py.typed" in names


@pytest.mark.parametrize("read", [sdist_metadata, wheel_metadata], ids=["sdist", "wheel"])
def test_metadata_states_the_license_as_an_expression(
    built: Built, read: Callable[[Built], Message]
) -> None:
    meta = read(built)
    assert meta["Name"] == "netkeepalive"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None
    classifiers = meta.get_all("Classifier") or []
    assert classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]


def test_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_build_prints_no_deprecation_warning(built: Built) -> None:
    lines = [line for line in built.output.splitlines() if "deprecat" in line.lower()]
    assert not lines, built.output


def changelog_version() -> str:
    text = (ROOT / "CHANGELOG.rst").read_text(encoding="utf-8")
    versions = re.findall(r"^(\d+\.\d+(?:\.\d+)?\S*)\n-+$", text, re.M)
    assert versions, "CHANGELOG.rst has no version heading"
    return versions[0]


def test_one_version_everywhere() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    shown = subprocess.run(
        [sys.executable, "-m", "netkeepalive", "--version"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert shown == f"netkeepalive {VERSION}\n"
    assert changelog_version() == VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)


def test_installed_metadata_has_the_version() -> None:
    try:
        installed = metadata.version("netkeepalive")
    except metadata.PackageNotFoundError:
        pytest.skip("netkeepalive is not installed here (run from the source tree)")
    assert installed == VERSION, "the installed metadata is stale: install the package again"


def test_built_metadata_has_the_version(built: Built) -> None:
    assert sdist_metadata(built)["Version"] == VERSION
    assert wheel_metadata(built)["Version"] == VERSION
    assert built.sdist.name == f"netkeepalive-{VERSION}.tar.gz"


def test_docs_link_the_changelog() -> None:
    index = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    toctree = index.split(".. toctree::", 1)[1]
    assert re.search(r"^\s+changelog$", toctree, re.M)
    page = (ROOT / "docs" / "changelog.rst").read_text(encoding="utf-8")
    assert ".. include:: ../CHANGELOG.rst" in page

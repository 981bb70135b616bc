"""The shared keepalive arguments of the commands, --detect-within among them."""

from __future__ import annotations

import argparse
import sys

import pytest

import netkeepalive as nk
from netkeepalive.cli._options import add_settings_arguments, settings_from_args

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux tables")


def parse(*argv: str) -> dict[str, int]:
    parser = argparse.ArgumentParser(prog="cmd")
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(argv), parser)


def test_plain_values_pass_through() -> None:
    assert parse("--idle", "5000", "--probes", "4") == {"idle": 5000, "probes": 4}
    assert parse() == {}


def test_detect_within_expands_to_the_library_plan() -> None:
    assert parse("--detect-within", "30000") == dict(nk.detect_within(30_000))
    assert parse("--detect-within", "30000", "--probes", "5") == dict(
        nk.detect_within(30_000, probes=5)
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--idle", "500"], "--idle: 500 ms is less than one second"),
        (["--probes", "128"], "--probes: 128 is out of range"),
        (["--interval", "x"], "not a whole number: 'x'"),
        (["--detect-within", "1000"], "--detect-within: 1000 ms is below"),
        (["--detect-within", "30000", "--idle", "5000"], "--detect-within chooses --idle"),
    ],
)
def test_refusals_name_the_argument(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

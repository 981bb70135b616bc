"""``netkeepalive demo``: the command, its arguments and its arithmetic."""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

import netkeepalive
from netkeepalive import cli
from netkeepalive._linux._silence import silence
from netkeepalive.cli import _demo as demo

RESULT = re.compile(r"^measured (\d+) ms, predicted (\d+) ms, difference ([+-]\d+) ms", re.M)
PROBE = re.compile(r"^\s*(\d+\.\d+) s  keepalive probe (\d+) sent", re.M)
DROP = re.compile(r"^\s*(\d+\.\d+) s  connection dropped: ETIMEDOUT", re.M)
CONSOLE_SCRIPT = Path(sys.executable).with_name("netkeepalive")

COMMANDS: Dict[str, List[str]] = {
    "module": [sys.executable, "-m", "netkeepalive", "demo"],
    "strict": [sys.executable, "-m", "netkeepalive", "demo", "--early", "0", "--late", "0"],
    "user timeout": [
        sys.executable,
        *("-m", "netkeepalive", "demo", "--probes", "9", "--user-timeout", "2500"),
    ],
    "detect within": [sys.executable, "-m", "netkeepalive", "demo", "--detect-within", "4000"],
}
if CONSOLE_SCRIPT.exists():
    COMMANDS["console script"] = [str(CONSOLE_SCRIPT), "demo", "--host", "::1"]

Finished = Tuple[int, str, str]

#: The demo itself runs on Linux only (TCP_INFO and SO_ATTACH_FILTER).
linux_demo = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the demo needs TCP_INFO and SO_ATTACH_FILTER"
)


@pytest.fixture(scope="module")
def finished() -> Iterator[Dict[str, Finished]]:
    """Every demo command line of this module, run concurrently to the end."""
    procs = {
        name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, argv in COMMANDS.items()
    }
    results: Dict[str, Finished] = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            results[name] = (proc.returncode, out, err)
        yield results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _numbers(out: str) -> Tuple[int, int, int]:
    found = RESULT.search(out)
    assert found, out
    measured, predicted, diff = (int(group) for group in found.groups())
    assert diff == measured - predicted
    return measured, predicted, diff


@linux_demo
@pytest.mark.slow
def test_demo_detects_on_time(finished: Dict[str, Finished]) -> None:
    status, out, err = finished["module"]
    assert status == 0, out + err
    assert "TCP_KEEPIDLE      1000 ms" in out
    assert "TCP_KEEPINTVL     1000 ms" in out
    assert "TCP_KEEPCNT       2" in out
    measured, predicted, _ = _numbers(out)
    assert predicted == 1000 + 1000 * 2
    assert predicted - 200 <= measured <= predicted + 1000
    probes = PROBE.findall(out)
    assert [int(n) for _, n in probes] == [1, 2]
    drop = DROP.search(out)
    assert drop, out
    assert abs(float(drop.group(1)) * 1000 - measured) <= 1
    assert "(the server's TCP received 0 segments meanwhile)" in out
    assert out.rstrip().endswith(": OK")


@linux_demo
@pytest.mark.slow
def test_demo_fails_outside_the_tolerance(finished: Dict[str, Finished]) -> None:
    # Kernel timers never fire early and are rounded up to their wheel's
    # granularity, so a zero tolerance cannot be met.
    status, out, err = finished["strict"]
    _, _, diff = _numbers(out)
    assert diff > 0
    assert status == 1, out + err
    assert out.rstrip().endswith("(tolerance -0/+0 ms): FAIL")


@linux_demo
@pytest.mark.slow
def test_demo_with_user_timeout(finished: Dict[str, Finished]) -> None:
    status, out, err = finished["user timeout"]
    assert status == 0, out + err
    assert "TCP_USER_TIMEOUT  2500 ms" in out
    assert "Linux ignores TCP_KEEPCNT" in out
    measured, predicted, _ = _numbers(out)
    assert predicted == 3000
    assert predicted - 200 <= measured <= predicted + 1000
    assert [int(n) for _, n in PROBE.findall(out)] == [1, 2]


IDLE_WITHIN = re.compile(r"^idle connection: dropped after (\d+) ms, budget 4000 ms: OK$", re.M)
DATA_WITHIN = re.compile(
    r"^data in flight: dropped after (\d+) ms \(ETIMEDOUT\), budget 4000 ms: OK$", re.M
)


@linux_demo
@pytest.mark.slow
def test_demo_detect_within_shows_both_connections_fail_in_the_budget(
    finished: Dict[str, Finished],
) -> None:
    status, out, err = finished["detect within"]
    assert status == 0, out + err
    assert "netkeepalive.detect_within(4000) chose them" in out
    # The settings shown are the ones detect_within chose, read back.
    plan = netkeepalive.detect_within(4000)
    assert f"TCP_KEEPIDLE      {plan['idle']} ms" in out
    assert f"TCP_KEEPINTVL     {plan['interval']} ms" in out
    assert f"TCP_KEEPCNT       {plan['probes']}" in out
    assert f"TCP_USER_TIMEOUT  {plan['user_timeout']} ms" in out
    measured, predicted, _ = _numbers(out)
    idle = IDLE_WITHIN.search(out)
    assert idle, out
    assert int(idle.group(1)) == measured
    assert predicted - 200 <= measured <= 4000
    data = DATA_WITHIN.search(out)
    assert data, out
    assert plan["user_timeout"] is not None
    assert plan["user_timeout"] - 200 <= int(data.group(1)) <= 4000


@linux_demo
@pytest.mark.slow
@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the netkeepalive script is not installed")
def test_console_script_on_ipv6_loopback(finished: Dict[str, Finished]) -> None:
    status, out, err = finished["console script"]
    assert status == 0, out + err
    assert "client ::1 port" in out
    measured, predicted, _ = _numbers(out)
    assert predicted - 200 <= measured <= predicted + 1000


@linux_demo
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--idle", "500"], "TCP_KEEPIDLE takes 1 to 32767 whole seconds"),
        (["--probes", "0"], "TCP_KEEPCNT takes 1 to 127"),
        (["--interval", "40000000"], "TCP_KEEPINTVL takes 1 to 32767 whole seconds"),
        (["--detect-within", "4000", "--idle", "1000"], "--detect-within chooses --idle itself"),
        (
            ["--detect-within", "4000", "--interval", "1000", "--user-timeout", "0"],
            "--detect-within chooses --interval, --user-timeout itself",
        ),
        (["--detect-within", "2253"], "--detect-within: 2253 ms is below what linux can express"),
        (["--detect-within", "4000", "--probes", "3"], "at least 4508 ms"),
    ],
)
def test_settings_refused(
    argv: List[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("netkeepalive demo: error: ")
    assert message in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "10.0.0.1"], "10.0.0.1 is not a loopback address"),
        (["--host", "localhost"], "expected an IP address"),
        (["--idle", "-1"], "must be >= 0"),
        (["--probes", "two"], "expected a whole number"),
    ],
)
def test_bad_arguments(argv: List[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_other_systems_are_told_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "detect_platform", lambda: "darwin")
    assert cli.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert "needs Linux (TCP_INFO and SO_ATTACH_FILTER)" in err
    assert "darwin" in err


def test_windows_is_told_why_too() -> None:
    # Windows has no os.uname(); the command must still load to say why it
    # cannot run (a fresh interpreter, so our modules are imported as there).
    # The standard library's own modules are loaded first, as the real
    # platform would have them: faking sys.platform would send some of them
    # (shutil, for argparse on 3.13) after Windows-only modules.
    code = (
        "import argparse, os, shutil, sys\n"
        "del os.uname\n"
        "sys.platform = 'win32'\n"
        "from netkeepalive import cli\n"
        "sys.exit(cli.main(['demo']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "needs Linux (TCP_INFO and SO_ATTACH_FILTER); this system is win32" in result.stderr


def test_only_the_chosen_subcommand_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    # "show" and "set" live in another module; "demo" must not need it.
    monkeypatch.setitem(cli.COMMANDS, "show", ("netkeepalive._no_such_module", "x"))
    parser = cli.build_parser("demo")
    args = parser.parse_args(["demo", "--probes", "3"])
    assert args.probes == 3
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser("show")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (netkeepalive.Settings(True, 1000, 1000, 2, 0), 3000),
        (netkeepalive.Settings(True, 2000, 1000, 3, 0), 5000),
        # TCP_USER_TIMEOUT replaces TCP_KEEPCNT: first timer at or after it,
        # with at least one probe sent.
        (netkeepalive.Settings(True, 1000, 1000, 9, 2500), 3000),
        (netkeepalive.Settings(True, 1000, 1000, 9, 2000), 2000),
        (netkeepalive.Settings(True, 1000, 1000, 9, 500), 2000),
        (netkeepalive.Settings(True, 2000, 1000, 1, 4500), 5000),
        (netkeepalive.Settings(True, 1000, 2000, 1, 1500), 3000),
        (netkeepalive.Settings(False, 1000, 1000, 2, 0), None),
        (netkeepalive.Settings(True, None, 1000, 2, 0), None),
    ],
)
def test_predicted_detection(settings: netkeepalive.Settings, expected: object) -> None:
    assert settings.detection_time == expected


def test_silence_reports_kernel_refusals() -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(netkeepalive.SocketOptionError) as info:
        silence(sock)
    assert info.value.errno == errno.EBADF
    assert str(info.value) == "setsockopt(SO_ATTACH_FILTER): [Errno 9] Bad file descriptor"

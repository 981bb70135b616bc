"""benchmarks/dead_peer.py: its options, its table, and a tiny run in namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Dict, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "dead_peer.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _matrix_report  # noqa: E402
import dead_peer  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the matrix is Linux only")


def test_defaults_cover_every_client_method_and_scenario() -> None:
    args = dead_peer.parse_args([])
    assert args.clients == list(dead_peer.CLIENTS)
    assert args.methods == dead_peer.METHODS
    assert args.scenarios == ["idle", "inflight"]
    assert (args.budget, args.limit) == (5000, 6000)


def test_lists_and_budget_are_read() -> None:
    args = dead_peer.parse_args(
        [
            "--clients",
            "socket,curl",
            "--methods",
            "none,set",
            "--scenarios",
            "idle",
            "--budget",
            "3000",
            "--json",
        ]
    )
    assert (args.clients, args.methods, args.scenarios) == (
        ["socket", "curl"],
        ["none", "set"],
        ["idle"],
    )
    assert (args.budget, args.limit, args.json) == (3000, 4000, True)
    assert dead_peer.parse_args(["--limit", "9000"]).limit == 9000


@pytest.mark.parametrize(
    "argv",
    [
        ["--clients", "telnet"],
        ["--methods", "none,magic"],
        ["--scenarios", ""],
        ["--budget", "1000"],
        ["--budget", "2000"],  # below what Linux can express
        ["--budget", "x"],
        ["--limit", "0"],
    ],
)
def test_bad_options_are_usage_errors(argv: List[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        dead_peer.parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def _cell(method: str, detected: Any, status: str = "run", **extra: Any) -> Dict[str, Any]:
    cell = {
        "client": "socket",
        "method": method,
        "scenario": "idle",
        "status": status,
        "detected_ms": detected,
        "budget_ms": 3000,
        "options": {"enabled": True},
        **extra,
    }
    cell["verdict"] = dead_peer.verdict(cell, 3000)
    cell["explanation"] = dead_peer.explanation("socket", method, "idle")
    return cell


def test_verdicts() -> None:
    assert _cell("api", 4000)["verdict"] == "ok"  # budget + 1 s is the line
    assert _cell("api", 4001)["verdict"] == "OVER"
    assert _cell("api", None)["verdict"] == "OVER"
    assert _cell("none", None)["verdict"] == "explained"
    assert _cell("run-enforce", None, "skipped", reason="x")["verdict"] == "skipped"
    # set turns keepalive on: a plain socket it left off is no excuse.
    assert _cell("set", None)["verdict"] == "OVER"
    assert _cell("set", None, options={"enabled": False})["verdict"] == "OVER"


def test_explanations_name_what_still_holds_a_client_back() -> None:
    explain = dead_peer.explanation
    # aiohttp's retry on a new connection: bounded by the user timeout where the
    # policy reaches new sockets (cgroup too, since its connect-phase hook),
    # unbounded under set, which only changes the sockets open at the time.
    for method in ("api", "run", "run-enforce", "cgroup", "cgroup-enforce"):
        assert explain("aiohttp", method, "inflight") == dead_peer.AIOHTTP_TWICE
    assert "set" in (explain("aiohttp", "set", "idle") or "")
    # py-amqp's own settings win only where nothing enforces the policy.
    assert explain("amqp", "run", "idle") == dead_peer.AMQP_OWN
    assert explain("amqp", "cgroup", "idle") == dead_peer.AMQP_OWN
    for method in ("run-enforce", "cgroup-enforce", "set"):
        assert explain("amqp", method, "idle") is None
    # Everything else the policy reaches is claimed within budget + 1 s.
    for method in ("run-enforce", "cgroup", "cgroup-enforce", "set"):
        for client in ("socket", "requests", "httpx", "redis", "node", "curl"):
            assert explain(client, method, "idle") is None
    assert explain("psycopg", "run-enforce", "idle") == dead_peer.LIBPQ
    assert explain("psycopg", "cgroup-enforce", "idle") is None


def test_rst_table_marks_reasons_and_breaks() -> None:
    table = dead_peer.rst_table(
        [
            _cell("none", None),
            _cell("api", 1300),
            _cell("run", None, "skipped", reason="the Python package x is not installed"),
            _cell("set", 9000),
        ]
    )
    lines = table.splitlines()
    assert lines[1].split() == ["client", "scenario", "none", "api", "run", "set"]
    assert lines[3].split()[:5] == ["socket", "idle", "hung", "[1]", "1.3"]
    assert "n/a [2]" in lines[3]
    assert "9.0 s [3]" in lines[3]
    assert "[2] the Python package x is not installed" in table
    assert "[3] over budget + 1 s, unexplained" in table


def _can_make_namespaces() -> str:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs ip (iproute2)"
    probe = f"nkm-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return "ip netns is not available: " + made.stderr.decode(errors="replace").strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if shutil.which("nft") is None and shutil.which("iptables") is None:
        return "needs nft or iptables"
    return ""


def test_tiny_matrix_in_namespaces() -> None:
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    proc = subprocess.Popen(
        [
            sys.executable,
            SCRIPT,
            "--clients",
            "socket",
            "--methods",
            "none,api",
            "--scenarios",
            "idle",
            "--budget",
            "3000",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    out, err = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert done.returncode == 0, done.stderr
    cells = {c["method"]: c for c in map(json.loads, done.stdout.splitlines())}
    assert set(cells) == {"none", "api"}
    for cell in cells.values():
        assert {"client", "method", "scenario", "detected_ms", "options"} <= set(cell)
        assert (cell["client"], cell["scenario"]) == ("socket", "idle")
    api, none = cells["api"], cells["none"]
    # The library API's settings, read back from the client's own socket.
    assert api["options"]["enabled"] is True
    assert api["options"]["idle_ms"] == 1000
    assert api["detected_ms"] is not None
    assert api["detected_ms"] <= 3000 + 1000
    assert "Errno 110" in api["error"]  # ETIMEDOUT, from the kernel
    assert none["options"]["enabled"] is False
    assert none["detected_ms"] is None  # hung until the wait ended
    # Both namespaces (named with the script's process id) are gone.
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"-{proc.pid}" not in namespaces


def test_svg_figure_has_a_coloured_cell_per_result() -> None:
    import xml.etree.ElementTree as ET

    cells = [_cell("none", None), _cell("api", 1300), _cell("set", 9000)]
    figure = _matrix_report.svg(cells, dead_peer.METHODS, "a <title> & more")
    root = ET.fromstring(figure)  # well-formed, the title escaped
    ns = "{http://www.w3.org/2000/svg}"
    fills = [rect.get("fill") for rect in root.iter(ns + "rect")]
    assert fills == [
        _matrix_report._COLOURS["explained"],
        _matrix_report._COLOURS["ok"],
        _matrix_report._COLOURS["OVER"],
    ]
    texts = [t.text for t in root.iter(ns + "text")]
    assert "a <title> & more" in texts
    assert "1.3 s" in texts


def test_docs_table_is_the_kept_run_and_every_cell_is_within_budget_or_explained() -> None:
    kept = os.path.join(ROOT, "docs", "outcomes.jsonl")
    cells = dead_peer._judged(kept)
    with open(os.path.join(ROOT, "docs", "outcomes_table.inc")) as f:
        assert f.read() == dead_peer.rst_table(cells) + "\n"
    made = subprocess.run(
        [sys.executable, SCRIPT, "--svg", kept], capture_output=True, text=True, check=True
    )
    with open(os.path.join(ROOT, "docs", "outcomes.svg")) as f:
        assert f.read() == made.stdout
    assert {c["client"] for c in cells} == set(dead_peer.CLIENTS)
    assert {c["method"] for c in cells} == set(dead_peer.METHODS)
    assert [c for c in cells if c["verdict"] in ("OVER", "ERROR")] == []
    for c in cells:
        if c["status"] == "run":
            assert c["options"] is not None  # read back from the client's socket

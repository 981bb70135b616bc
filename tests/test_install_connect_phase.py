"""install() bounds the connect phase: TCP_USER_TIMEOUT is on the socket before the SYN.

A private network namespace (unique name, removed afterwards) drops every
packet to one port on its loopback interface, so a connect there is never
answered.  Under ``install(user_timeout=2000)`` the connect ends with
``ETIMEDOUT`` after the user timeout; without a policy the kernel keeps
retrying its SYN for minutes, so the control connect, given a short socket
timeout, is still pending when that runs out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel"),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not (shutil.which("ip") and shutil.which("nft")), reason="needs ip and nft"),
]

ROOT = Path(__file__).resolve().parents[1]
PORT = 9

CHILD = """
import errno, json, socket, sys, time
import netkeepalive as nk
PORT = int(sys.argv[2])
policy = sys.argv[1] == "policy"
if policy:
    nk.install(user_timeout=2000)
sock = socket.socket()
if not policy:
    sock.settimeout(4)
start = time.monotonic()
try:
    sock.connect(("127.0.0.1", PORT))
    outcome = "connected"
except (TimeoutError, socket.timeout) as exc:  # one class from Python 3.10 on
    outcome = "ETIMEDOUT" if exc.errno == errno.ETIMEDOUT else "still pending"
except OSError as exc:
    outcome = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps({
    "outcome": outcome,
    "seconds": time.monotonic() - start,
    "user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
}))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def silent_netns() -> Iterator[str]:
    """A namespace whose loopback drops every packet to PORT."""
    name = f"nkconnect{os.getpid()}"
    ip("netns", "add", name)
    try:
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        rules = (
            "add table inet nkdrop\n"
            "add chain inet nkdrop out { type filter hook output priority 0 ; }\n"
            f"add rule inet nkdrop out tcp dport {PORT} drop\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"],
            input=rules,
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield name
    finally:
        ip("netns", "delete", name)


def connect_in(name: str, arm: str) -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        ["ip", "netns", "exec", name, sys.executable, "-c", CHILD, arm, str(PORT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_user_timeout_bounds_an_unanswered_connect(silent_netns: str) -> None:
    bounded = connect_in(silent_netns, "policy")
    assert bounded["outcome"] == "ETIMEDOUT", bounded
    assert bounded["user_timeout"] == 2000
    assert isinstance(bounded["seconds"], float)
    assert bounded["seconds"] < 60
    control = connect_in(silent_netns, "none")
    assert control["outcome"] == "still pending", control
    assert control["user_timeout"] == 0

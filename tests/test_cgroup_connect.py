"""The cgroup policy before the SYN: ``connect()`` to a silent peer (Linux, root).

The test runs in a network namespace made for it: a veth pair whose far
end answers nothing, so no packet leaves the namespace.  The processes are
plain Python children, moved into their cgroup before they make a socket
(see :mod:`test_cgroup_enforce`).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import uuid
from typing import Iterator

import pytest
from test_cgroup import _REASON, Cgroup, attach, cg  # noqa: F401  (cg: a fixture)
from test_cgroup_enforce import GO, report_of, start

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cgroup BPF programs are Linux-only"
)

#: Connects to argv[1] (an address that never answers), reports how it ended.
CONNECTOR = (
    GO
    + r"""
s = socket.socket()
try:
    s.connect((sys.argv[1], 9))
    report = {"errno": None}
except OSError as exc:
    report = {"errno": exc.errno}
report["user_timeout"] = s.getsockopt(socket.IPPROTO_TCP, 18)
print(json.dumps(report), flush=True)
"""
)

#: The address that never answers, and this end's, inside the test's namespace
#: (TEST-NET-1, RFC 5737).
SILENT, LOCAL = "192.0.2.2", "192.0.2.1"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def silent_netns() -> Iterator[str]:
    """A network namespace where :data:`SILENT` is a neighbour that never answers.

    A veth pair, both ends inside; :data:`SILENT` has a permanent neighbour
    entry to a MAC address nobody has, so each SYN goes out and is dropped.
    """
    if _REASON is not None:
        pytest.skip(_REASON)
    name = f"nka-silent-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", name)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a network namespace here: {exc}")
    try:
        ip("-n", name, "link", "add", "nka0", "type", "veth", "peer", "name", "nka1")
        ip("-n", name, "addr", "add", f"{LOCAL}/24", "dev", "nka0")
        for link in ("lo", "nka0", "nka1"):
            ip("-n", name, "link", "set", link, "up")
        ip(
            "-n",
            name,
            "neigh",
            "add",
            SILENT,
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "nka0",
            "nud",
            "permanent",
        )
        yield name
    finally:
        ip("netns", "del", name)


def test_connect_to_a_silent_peer_ends_within_the_user_timeout(
    cg: Cgroup,  # noqa: F811
    silent_netns: str,
) -> None:
    """The policy's TCP_USER_TIMEOUT is set before the SYN, so it bounds the SYN retries.

    A second child with no policy connects to the same address at the same
    time: it is still waiting well after the first has given up (the
    kernel's SYN retries take minutes), and is then killed.
    """
    attach(cg.name, "--user-timeout", 2000)
    # A sibling, not a sub-cgroup: programs of a cgroup run for its sub-cgroups too.
    outside = Cgroup(cg.directory + "-plain", cg.name + "-plain")
    os.mkdir(outside.directory)
    prefix = ["ip", "netns", "exec", silent_netns]
    try:
        bounded = start(CONNECTOR, [SILENT], cg, prefix)
        unbounded = start(CONNECTOR, [SILENT], outside, prefix)
        try:
            report = report_of(bounded, timeout=30)  # minutes without the policy
            assert report == {"errno": errno.ETIMEDOUT, "user_timeout": 2000}
            time.sleep(3)  # margin: as long again, and more
            assert unbounded.poll() is None, "the connect without a policy ended too"
        finally:
            unbounded.kill()
            unbounded.communicate()
    finally:
        outside.remove()

"""``cgroup attach --enforce`` at the edges: value forms, families and protocols.

Like :mod:`test_cgroup_enforce`, each check is a plain Python child moved
into the test cgroup, which writes options and reads them back with
``socket.getsockopt``.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from typing import Any, Dict

import pytest
from test_cgroup import Cgroup, cg  # noqa: F401  (cg: a fixture)
from test_cgroup_enforce import GO, KERNEL, enforced, report_of, start  # noqa: F401
from test_retrofit import run_cli

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cgroup BPF programs are Linux-only"
)

#: Makes a connected socket of argv[1] (family, type, protocol; a listener of the
#: same kind on loopback), applies each write of argv[2] ([name, level, number,
#: value, length]; a length packs the value into that many bytes) and reports
#: what getsockopt reads back after each.
EDGE_WRITER = (
    GO
    + r"""
import struct
family, kind, proto = json.loads(sys.argv[1])
host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
s = socket.socket(family, kind, proto)
if kind == socket.SOCK_STREAM:
    listener = socket.socket(family, kind, proto)
    listener.bind((host, 0))
    listener.listen()
    s.connect(listener.getsockname()[:2])
report = {}
for name, level, number, value, length in json.loads(sys.argv[2]):
    if length is not None:
        value = struct.pack("i", value).ljust(length, b"\0")[:length]
    try:
        s.setsockopt(level, number, value)
        report[name] = s.getsockopt(level, number)
    except OSError as exc:
        report[name] = "errno %d" % exc.errno
print(json.dumps(report), flush=True)
"""
)

TCP, SOL = socket.IPPROTO_TCP, socket.SOL_SOCKET
IDLE, CNT, UT = socket.TCP_KEEPIDLE, socket.TCP_KEEPCNT, 18
MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)


def writes(group: Cgroup, kind: Any, ops: Any) -> Dict[str, Any]:
    return report_of(start(EDGE_WRITER, [json.dumps(kind), json.dumps(ops)], group))


def test_edge_values(enforced: Cgroup) -> None:  # noqa: F811
    report = writes(
        enforced,
        [socket.AF_INET, socket.SOCK_STREAM, 0],
        [
            ["keepalive_2", SOL, socket.SO_KEEPALIVE, 2, None],  # on, as the kernel reads it
            ["idle_8_bytes", TCP, IDLE, 7200, 8],  # the kernel reads the first int
            ["idle_equal", TCP, IDLE, KERNEL["idle"], None],
            ["idle_negative", TCP, IDLE, -5, None],
            ["probes_0", TCP, CNT, 0, None],
            ["user_timeout_negative", TCP, UT, -1, None],
            ["keepalive_off_8_bytes", SOL, socket.SO_KEEPALIVE, 0, 8],
            ["idle_3_bytes", TCP, IDLE, 7200, 3],
            # Longer than a page: the program sees a copy of the first page only.
            ["idle_large", TCP, IDLE, 7200, 5000],
            ["keepalive_off_large", SOL, socket.SO_KEEPALIVE, 0, 5000],
            ["probes_large_shorter", TCP, CNT, 2, 5000],
            ["nodelay_large", TCP, socket.TCP_NODELAY, 1, 5000],
        ],
    )
    assert report == {
        "keepalive_2": 1,
        "idle_8_bytes": KERNEL["idle"],
        "idle_equal": KERNEL["idle"],
        "idle_negative": f"errno {errno.EINVAL}",
        "probes_0": f"errno {errno.EINVAL}",
        "user_timeout_negative": f"errno {errno.EINVAL}",
        "keepalive_off_8_bytes": 1,
        "idle_3_bytes": f"errno {errno.EINVAL}",
        "idle_large": KERNEL["idle"],
        "keepalive_off_large": 1,
        "probes_large_shorter": 2,
        "nodelay_large": 1,
    }


CLAMPED = [
    ["keepalive_off", SOL, socket.SO_KEEPALIVE, 0, None],
    ["idle_7200", TCP, IDLE, 7200, None],
    ["probes_9", TCP, CNT, 9, None],
    ["user_timeout_0", TCP, UT, 0, None],
]
CLAMPED_TO = {
    "keepalive_off": 1,
    "idle_7200": KERNEL["idle"],
    "probes_9": KERNEL["probes"],
    "user_timeout_0": KERNEL["user_timeout"],
}


def test_ipv6_is_clamped(enforced: Cgroup) -> None:  # noqa: F811
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    assert writes(enforced, [socket.AF_INET6, socket.SOCK_STREAM, 0], CLAMPED) == CLAMPED_TO


def test_udp_is_untouched(enforced: Cgroup) -> None:  # noqa: F811
    ops = [["keepalive_off", SOL, socket.SO_KEEPALIVE, 0, None]]
    assert writes(enforced, [socket.AF_INET, socket.SOCK_DGRAM, 0], ops) == {"keepalive_off": 0}


def _mptcp() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, MPTCP).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _mptcp(), reason="no MPTCP here (net.mptcp.enabled)")
def test_mptcp_is_clamped(enforced: Cgroup) -> None:  # noqa: F811
    """An MPTCP socket takes the keepalive options too (and hands them to its TCP
    subflows): it must not be a way around the ceiling."""
    # MPTCP has no TCP_USER_TIMEOUT (ENOPROTOOPT with or without a ceiling).
    report = writes(enforced, [socket.AF_INET, socket.SOCK_STREAM, MPTCP], CLAMPED)
    assert report == {**CLAMPED_TO, "user_timeout_0": f"errno {errno.ENOPROTOOPT}"}


def test_a_foreign_setsockopt_program_like_ours_is_left_alone(cg: Cgroup) -> None:  # noqa: F811
    """A cgroup/setsockopt program named ``netkeepalive`` with maps named and shaped like
    ours (but unmarked) is neither counted, nor replaced, nor detached."""
    import os

    from netkeepalive import cgroup
    from netkeepalive._linux import _bpf, _bpfsys, _cgroupfs, _enforce, _programs

    policy = _programs.new_policy_map("netkeepalive", entries=2)
    try:
        _bpfsys.map_update(policy, _bpf.POLICY_KEY, _bpf.policy_value({"enabled": 1, "idle": 99}))
        prog, counter = _enforce.load(policy, "netkeepalive")
        try:
            with _cgroupfs.opened(cg.directory) as fd:
                _bpfsys.prog_attach(
                    fd, prog, _bpfsys.ATTACH_CGROUP_SETSOCKOPT, _bpfsys.F_ALLOW_MULTI
                )
            impostor = _bpfsys.prog_info(prog).prog_id
        finally:
            os.close(prog)
            os.close(counter)
    finally:
        os.close(policy)
    assert cgroup.status(cg.name) is None
    assert cgroup.foreign_programs(cg.name) == [(impostor, "netkeepalive")]
    policy_now = cgroup.attach(cg.name, idle=30_000, enforce=True)
    assert policy_now.enforced
    assert cgroup.status(cg.name) == policy_now
    assert cgroup.detach(cg.name) is True
    assert cgroup.status(cg.name) is None
    assert cgroup.foreign_programs(cg.name) == [(impostor, "netkeepalive")]
    with _cgroupfs.opened(cg.directory) as fd:
        assert _bpfsys.prog_query(fd, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)[1] == [impostor]
        found = _bpfsys.prog_get_fd_by_id(impostor)
        try:
            _bpfsys.prog_detach(fd, found, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)
        finally:
            os.close(found)


def test_an_enforcer_left_alone_is_reported_as_not_applied(cg: Cgroup) -> None:  # noqa: F811
    """Another tool detached our sock_ops program: status says what is left."""
    import os

    from netkeepalive import cgroup
    from netkeepalive._linux import _bpfsys, _cgroupfs, _programs

    attached = cgroup.attach(cg.name, idle=30_000, enforce=True)
    with _cgroupfs.opened(cg.directory) as fd:
        (sock_ops,) = _programs.ours(fd)
        found = _bpfsys.prog_get_fd_by_id(sock_ops.prog_id)
        try:
            _bpfsys.prog_detach(fd, found, _bpfsys.ATTACH_CGROUP_SOCK_OPS)
        finally:
            os.close(found)
    left = cgroup.status(cg.name)
    assert left is not None
    assert (left.applied, left.enforced, left.idle) == (False, True, attached.idle)
    assert (cg.name, left) in cgroup.policies()
    assert cgroup.effective_policy_of(cg.name) is None  # nothing sets the values
    text = run_cli("cgroup", "status", cg.name)
    assert text.stdout.splitlines() == [
        f"{cg.name}: keepalive on, idle 30000 ms; enforced, 0 writes clamped; "
        "not applied to new connections (its sock_ops program is gone; attach again or detach)"
    ]
    (entry,) = json.loads(run_cli("cgroup", "status", cg.name, "--json").stdout)
    assert entry["applied"] is False
    assert entry["enforce"] == {"enabled": True, "clamped": 0}
    # What is left still clamps, as status says, and detach removes it.
    assert writes(
        cg, [socket.AF_INET, socket.SOCK_STREAM, 0], [["idle", TCP, IDLE, 600, None]]
    ) == {"idle": 30}
    assert cgroup.detach(cg.name) is True
    assert cgroup.status(cg.name) is None
    with _cgroupfs.opened(cg.directory) as fd:
        assert _bpfsys.prog_query(fd, _bpfsys.ATTACH_CGROUP_SETSOCKOPT)[1] == []

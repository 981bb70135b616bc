"""Whether this kernel's ``bpf_setsockopt`` takes the keepalive options.

Linux 5.9 and later do (see :data:`netkeepalive.cgroup.MINIMUM_KERNEL`).
On an older release number :func:`check_kernel` asks the kernel itself,
with a probe program in a throwaway cgroup and one test connection, since
distribution kernels backport BPF features.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from typing import List, Optional, Tuple

from .._common import version_tuple
from . import _bpf, _bpfsys
from ._cgroupfs import CgroupError, cgroup2_mount, opened
from ._programs import PROGRAM_NAME, new_policy_map

__all__ = ["check_kernel"]

#: What the probe asks ``bpf_setsockopt`` to set, per :data:`_bpf.POLICY_FIELDS`
#: field: values every kernel that knows the option accepts.
_PROBE_VALUES = {"enabled": 1, "idle": 1, "interval": 1, "probes": 1, "user_timeout": 1}
#: A probe result slot nobody wrote: the program did not run.
_NOT_RUN = 1
#: The test connection's client: joins the cgroup (argv[1]), then connects.
_PROBE_CLIENT = (
    "import os, socket, sys\n"
    "with open(sys.argv[1], 'w') as f: f.write(str(os.getpid()))\n"
    "socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=5).close()\n"
)


def check_kernel(minimum: Tuple[int, int]) -> None:
    """Refuse a kernel whose ``bpf_setsockopt`` does not take the five options.

    *minimum* (Linux 5.9) and later take them.  An older release number is not the end:
    distribution kernels backport BPF features, so the kernel is asked
    (:func:`_probe_setsockopt`), and only a refusal or a failed test is fatal.
    """
    release = os.uname().release
    found = version_tuple(release)
    if not found or found >= minimum:
        return
    why = _why_no_backport()
    if why is None:
        return  # a backport: every option was accepted
    raise CgroupError(
        errno.EOPNOTSUPP,
        f"Linux {release}: bpf_setsockopt accepts SO_KEEPALIVE, TCP_KEEPIDLE, "
        f"TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT from Linux 5.9, and {why}; "
        "nothing was attached",
    )


def _why_no_backport() -> Optional[str]:
    """What :func:`_probe_setsockopt` shows wrong, or ``None`` if every option was accepted."""
    try:
        results = _probe_setsockopt()
    except OSError as exc:
        return f"testing for a backport failed ({exc.strerror or exc})"
    if results is None:
        return "testing for a backport failed (no test connection could be made)"
    refused = [
        f"{option} ({os.strerror(-result)})"
        for option, result in zip(_OPTION_NAMES, results)
        if result < 0
    ]
    if refused:
        return "a test connection here shows it refusing " + ", ".join(refused)
    if _NOT_RUN in results:
        return "testing for a backport failed (the probe did not run on the test connection)"
    return None


#: The C name of each :data:`_bpf.POLICY_FIELDS` option, in map order.
_OPTION_NAMES = tuple(option.name for _, option in _bpf.POLICY_FIELDS)


def _run_probe_client(procs: str, port: int) -> bool:
    """Run :data:`_PROBE_CLIENT`; whether it connected."""
    import subprocess
    import sys

    try:
        child = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _PROBE_CLIENT, procs, str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return child.returncode == 0


def _probe_setsockopt() -> Optional[List[int]]:
    """What ``bpf_setsockopt`` returns for each option on a test connection here.

    A throwaway cgroup under the cgroup2 mount gets a probe program
    (:func:`_bpf.setsockopt_probe_program`); a child process joins it and
    connects to a loopback listener of ours; the program stores each
    result (0 or a negative errno) in a map.  ``None`` when the child could
    not be run or did not connect.  The cgroup, program and map are gone
    afterwards.
    """
    import socket
    import sys
    import uuid

    if not sys.executable:
        return None
    directory = os.path.join(cgroup2_mount(), f"{PROGRAM_NAME}-probe-{uuid.uuid4().hex[:12]}")
    os.mkdir(directory)
    try:
        map_fd = new_policy_map("nka_probe")
        try:
            not_run = [_NOT_RUN] * len(_bpf.POLICY_FIELDS)
            _bpfsys.map_update(map_fd, _bpf.POLICY_KEY, struct.pack(_bpf.POLICY_FORMAT, *not_run))
            values = [_PROBE_VALUES[knob] for knob, _ in _bpf.POLICY_FIELDS]
            program = _bpf.setsockopt_probe_program(map_fd, values)
            prog_fd = _bpfsys.prog_load(_bpfsys.PROG_TYPE_SOCK_OPS, program, "nka_probe")
            try:
                with opened(directory) as cgroup_fd:
                    _bpfsys.prog_attach(
                        cgroup_fd, prog_fd, _bpfsys.ATTACH_CGROUP_SOCK_OPS, _bpfsys.F_ALLOW_MULTI
                    )
                    try:
                        with socket.create_server(("127.0.0.1", 0)) as listener:
                            port = listener.getsockname()[1]
                            procs = os.path.join(directory, "cgroup.procs")
                            connected = _run_probe_client(procs, port)
                    finally:
                        _bpfsys.prog_detach(cgroup_fd, prog_fd, _bpfsys.ATTACH_CGROUP_SOCK_OPS)
            finally:
                os.close(prog_fd)
            if not connected:
                return None
            raw = _bpfsys.map_lookup(map_fd, _bpf.POLICY_KEY, _bpf.POLICY_VALUE_SIZE)
        finally:
            os.close(map_fd)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    return list(struct.unpack(_bpf.POLICY_FORMAT, raw))

"""The enforcing half of a cgroup policy (``cgroup attach --enforce``, Linux 5.3+).

Beside the sock_ops program, which gives each connection the policy, a
``BPF_PROG_TYPE_CGROUP_SOCKOPT`` program attached at
``BPF_CGROUP_SETSOCKOPT`` sees every ``setsockopt()`` of the cgroup's
processes before the kernel handles it, and makes the policy a ceiling
(:func:`netkeepalive._linux._bpf.enforce_program`): it reads the same policy map
as the sock_ops program and counts the writes it lowered in a one-entry
array map of its own, :data:`COUNTER_MAP_NAME`, that :func:`clamped`
reads back.

Kernel facts relied on (``kernel/bpf/cgroup.c``,
``__cgroup_bpf_run_filter_setsockopt``): the program sees a copy of the
caller's value (``ctx->optval`` up to ``ctx->optval_end``, at least 16
bytes); when it returns 1 with ``ctx->optlen`` left as it was (not 0, not
-1), the kernel hands that copy, as the program left it, to its own
setsockopt; returning 0 would fail the call with ``EPERM``.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Tuple

from . import _bpf, _bpfsys

__all__ = ["COUNTER_MAP_NAME", "MINIMUM_KERNEL", "clamped", "load"]

#: Name of the counter map in the kernel: how :func:`clamped` finds it.
COUNTER_MAP_NAME = "nka_clamped"
#: First Linux release with ``BPF_PROG_TYPE_CGROUP_SOCKOPT`` (commit 0d01da6afc54,
#: "bpf: implement getsockopt and setsockopt hooks").
MINIMUM_KERNEL = (5, 3)

_KEY = struct.pack("=I", 0)
#: The counter: one unsigned 64-bit number, added to atomically by the program.
_COUNTER_FORMAT = "=Q"
_COUNTER_SIZE = struct.calcsize(_COUNTER_FORMAT)


def load(policy_fd: int, name: str) -> Tuple[int, int]:
    """Load the enforcing program for the policy map *policy_fd*.

    Returns ``(program, counter map)`` descriptors (the caller closes
    both); on an error neither is left open.
    """
    counter_fd = _bpfsys.map_create(
        _bpfsys.MAP_TYPE_ARRAY, len(_KEY), _COUNTER_SIZE, 1, COUNTER_MAP_NAME
    )
    try:
        code = _bpf.enforce_program(policy_fd, counter_fd)
        prog_fd = _bpfsys.prog_load(
            _bpfsys.PROG_TYPE_CGROUP_SOCKOPT,
            code,
            name,
            attach_type=_bpfsys.ATTACH_CGROUP_SETSOCKOPT,
        )
    except OSError as exc:
        os.close(counter_fd)
        if exc.errno == errno.EINVAL and _older_than_5_3():
            exc.strerror = (
                f"{exc.strerror}; enforcing needs cgroup/setsockopt programs, "
                f"which arrived in Linux {MINIMUM_KERNEL[0]}.{MINIMUM_KERNEL[1]}"
            )
        raise
    return prog_fd, counter_fd


def _older_than_5_3() -> bool:
    from .._common import version_tuple

    found = version_tuple(os.uname().release)
    return bool(found) and found < MINIMUM_KERNEL


def clamped(info: _bpfsys.ProgInfo) -> int:
    """How many application writes the enforcing program *info* has clamped so far."""
    for map_id in info.map_ids:
        fd = _bpfsys.map_get_fd_by_id(map_id)
        try:
            found = _bpfsys.map_info(fd)
            if found.name != COUNTER_MAP_NAME or found.value_size != _COUNTER_SIZE:
                continue
            raw = _bpfsys.map_lookup(fd, _KEY, _COUNTER_SIZE)
        finally:
            os.close(fd)
        count: int = struct.unpack(_COUNTER_FORMAT, raw)[0]
        return count
    raise OSError(errno.EIO, f"enforcing program {info.prog_id} has no {COUNTER_MAP_NAME} map")

"""Which BPF programs on a cgroup are ours: the policy map that marks them, and their kinds.

Each of our programs uses a policy map made by :func:`policy_map`: entry 0
holds the policy, entry 1 a mark nobody writes by accident.  A program is
recognised by that map, never by its name or tag (see :func:`program_kind`).
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import _bpf, _bpfsys

__all__ = [
    "HOOKS",
    "KINDS",
    "PROGRAM_NAME",
    "SETSOCKOPT",
    "SOCK_OPS",
    "Ours",
    "all_ours",
    "new_policy_map",
    "ours",
    "policy_map",
    "program_fd",
    "program_kind",
    "programs",
]

#: The name of our programs and their maps in the kernel
#: (:data:`netkeepalive.cgroup.PROGRAM_NAME`).
PROGRAM_NAME = "netkeepalive"
#: The key of the mark in a policy map: entry 1 (the programs read entry 0 only).
_MARK_KEY = struct.pack("=I", 1)
#: The mark: a name, a random 64-bit number and the layout of entry 0 (1: the
#: :data:`_bpf.POLICY_FIELDS` of this release, an older layout being a prefix).
_MARK = struct.pack("=16sQQ", PROGRAM_NAME.encode("ascii"), 0x9D3F6A1C52E4B807, 1)


def new_policy_map(name: str, entries: int = 1) -> int:
    """An array map with entries shaped like the policy (``BPF_MAP_CREATE``)."""
    return _bpfsys.map_create(
        _bpfsys.MAP_TYPE_ARRAY, len(_bpf.POLICY_KEY), _bpf.POLICY_VALUE_SIZE, entries, name
    )


def policy_map() -> int:
    """A new policy map: entry 0 for the policy, entry 1 holding :data:`_MARK`."""
    fd = new_policy_map(PROGRAM_NAME, entries=2)
    try:
        _bpfsys.map_update(fd, _MARK_KEY, _MARK.ljust(_bpf.POLICY_VALUE_SIZE, b"\0"))
    except BaseException:
        os.close(fd)
        raise
    return fd


def program_fd(prog_id: int) -> Optional[int]:
    """A descriptor of program *prog_id* (``BPF_PROG_GET_FD_BY_ID``), ``None`` if it is gone."""
    try:
        return _bpfsys.prog_get_fd_by_id(prog_id)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # detached meanwhile
            return None
        raise


#: Our kinds of program, by BPF program type: what :func:`program_kind` answers.
KINDS: Dict[int, str] = {
    _bpfsys.PROG_TYPE_SOCK_OPS: "keepalive",
    _bpfsys.PROG_TYPE_CGROUP_SOCKOPT: "enforce",
}
SOCK_OPS = _bpfsys.ATTACH_CGROUP_SOCK_OPS
SETSOCKOPT = _bpfsys.ATTACH_CGROUP_SETSOCKOPT
#: The hooks our programs are attached at; the enforcing one first, so that
#: detaching in this order never leaves an enforcing program without its policy.
HOOKS = (SETSOCKOPT, SOCK_OPS)


@dataclass(frozen=True)
class Ours:
    """One of our programs attached to a cgroup: its id, kind and policy map."""

    prog_id: int
    kind: str
    map_id: int
    info: _bpfsys.ProgInfo = field(compare=False, repr=False)


def program_kind(info: _bpfsys.ProgInfo) -> Optional[str]:
    """Which of our kinds (:data:`KINDS`) the program *info* is, or ``None`` if foreign."""
    found = _recognise(info)
    return None if found is None else found.kind


def _recognise(info: _bpfsys.ProgInfo) -> Optional[Ours]:
    """*info* as :class:`Ours` when it is ours, else ``None``.

    Ours: a program type of :data:`KINDS` that uses a map we made, which
    nobody makes by accident: an array map named :data:`PROGRAM_NAME` with
    4-byte keys, two entries and :data:`_MARK` in entry 1.  A name alone
    (anyone can load a program called ``netkeepalive``) or a program tag
    (it changes with every change to the instructions, so a program
    attached by another release would turn foreign) is not enough.  Only
    the maps' descriptions are read until one matches; a foreign
    program's map is never read.
    """
    kind = KINDS.get(info.prog_type)
    if kind is None:
        return None
    for map_id in info.map_ids:
        try:
            fd = _bpfsys.map_get_fd_by_id(map_id)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # gone meanwhile
                continue
            raise
        try:
            shape = _bpfsys.map_info(fd)
            if (
                shape.map_type == _bpfsys.MAP_TYPE_ARRAY
                and shape.name == PROGRAM_NAME
                and (shape.key_size, shape.max_entries) == (len(_bpf.POLICY_KEY), 2)
                and shape.value_size >= max(len(_MARK), _bpf.POLICY_VALUE_SIZE)
                and _bpfsys.map_lookup(fd, _MARK_KEY, shape.value_size)[: len(_MARK)] == _MARK
            ):
                return Ours(info.prog_id, kind, map_id, info)
        finally:
            os.close(fd)
    return None


def programs(
    cgroup_fd: int, attach_type: int = SOCK_OPS
) -> Tuple[List[Ours], List[_bpfsys.ProgInfo]]:
    """Ours and the foreign programs attached to the cgroup itself at *attach_type*,
    in the order they run."""
    ours: List[Ours] = []
    foreign: List[_bpfsys.ProgInfo] = []
    try:
        _, ids = _bpfsys.prog_query(cgroup_fd, attach_type)
    except OSError as exc:
        if attach_type != SOCK_OPS and exc.errno == errno.EINVAL:
            return ours, foreign  # a kernel without this hook (cgroup/setsockopt: before 5.3)
        raise
    for prog_id in ids:
        fd = program_fd(prog_id)
        if fd is None:
            continue
        try:
            info = _bpfsys.prog_info(fd)
        finally:
            os.close(fd)
        found = _recognise(info)
        if found is None:
            foreign.append(info)
        else:
            ours.append(found)
    return ours, foreign


def ours(cgroup_fd: int, attach_type: int = SOCK_OPS) -> List[Ours]:
    """Our programs attached to the cgroup itself at *attach_type*."""
    return programs(cgroup_fd, attach_type)[0]


def all_ours(cgroup_fd: int) -> List[Tuple[int, int]]:
    """``(attach type, program id)`` of every program of ours on the cgroup itself,
    in :data:`HOOKS` order."""
    return [(hook, found.prog_id) for hook in HOOKS for found in ours(cgroup_fd, hook)]

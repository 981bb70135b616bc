"""The ``bpf(2)`` system call through ctypes: the handful of commands
:mod:`netkeepalive.cgroup` needs.

Command numbers, ``union bpf_attr`` layouts and ``struct bpf_prog_info``
are from ``include/uapi/linux/bpf.h``; every layout used here has been in
the kernel since 4.15 at the latest (newer kernels only append fields, and
take a shorter attribute block as long as the rest would be zero).  Each
call raises :class:`OSError` with the errno and the command's name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import List, Optional, Tuple

from .._libc import libc

__all__ = [
    "ATTACH_CGROUP_SETSOCKOPT",
    "ATTACH_CGROUP_SOCK_OPS",
    "F_ALLOW_MULTI",
    "MAP_TYPE_ARRAY",
    "PROG_TYPE_CGROUP_SOCKOPT",
    "PROG_TYPE_SOCK_OPS",
    "BpfError",
    "MapInfo",
    "ProgInfo",
    "bpf",
    "map_create",
    "map_get_fd_by_id",
    "map_info",
    "map_lookup",
    "map_update",
    "prog_attach",
    "prog_detach",
    "prog_get_fd_by_id",
    "prog_info",
    "prog_load",
    "prog_query",
    "syscall_number",
]

#: ``__NR_bpf`` per ``uname -m`` (arch/*/entry/syscalls and the generic
#: table in include/uapi/asm-generic/unistd.h for the newer ports).
SYSCALL_NUMBERS = {
    "x86_64": 321,
    "i386": 357,
    "i686": 357,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64": 361,
    "ppc64le": 361,
    "s390x": 351,
}

# enum bpf_cmd
MAP_CREATE = 0
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
PROG_LOAD = 5
PROG_ATTACH = 8
PROG_DETACH = 9
PROG_GET_FD_BY_ID = 13
MAP_GET_FD_BY_ID = 14
OBJ_GET_INFO_BY_FD = 15
PROG_QUERY = 16

_NAMES = {
    MAP_CREATE: "BPF_MAP_CREATE",
    MAP_LOOKUP_ELEM: "BPF_MAP_LOOKUP_ELEM",
    MAP_UPDATE_ELEM: "BPF_MAP_UPDATE_ELEM",
    PROG_LOAD: "BPF_PROG_LOAD",
    PROG_ATTACH: "BPF_PROG_ATTACH",
    PROG_DETACH: "BPF_PROG_DETACH",
    PROG_GET_FD_BY_ID: "BPF_PROG_GET_FD_BY_ID",
    MAP_GET_FD_BY_ID: "BPF_MAP_GET_FD_BY_ID",
    OBJ_GET_INFO_BY_FD: "BPF_OBJ_GET_INFO_BY_FD",
    PROG_QUERY: "BPF_PROG_QUERY",
}

MAP_TYPE_ARRAY = 2  # enum bpf_map_type: BPF_MAP_TYPE_ARRAY
PROG_TYPE_SOCK_OPS = 13  # enum bpf_prog_type: BPF_PROG_TYPE_SOCK_OPS
PROG_TYPE_CGROUP_SOCKOPT = 25  # enum bpf_prog_type: BPF_PROG_TYPE_CGROUP_SOCKOPT (5.3+)
ATTACH_CGROUP_SOCK_OPS = 3  # enum bpf_attach_type: BPF_CGROUP_SOCK_OPS
ATTACH_CGROUP_SETSOCKOPT = 22  # enum bpf_attach_type: BPF_CGROUP_SETSOCKOPT (5.3+)
F_ALLOW_MULTI = 1 << 1  # BPF_F_ALLOW_MULTI (attach flags)
OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN, with the terminating NUL

#: Size of the attribute block passed to every command (the kernel's
#: ``union bpf_attr`` is larger today; it accepts a shorter one).
_ATTR_SIZE = 128
#: Bytes of ``struct bpf_prog_info`` asked for: up to ``name`` (offset 64).
_PROG_INFO_SIZE = 80


def syscall_number() -> int:
    """``__NR_bpf`` for this machine, or :class:`OSError` ``ENOSYS``."""
    machine = os.uname().machine
    number = SYSCALL_NUMBERS.get(machine)
    if number is None:
        raise OSError(
            errno.ENOSYS,
            f"bpf(2): the system call number for this architecture ({machine}) is not known",
        )
    return number


class BpfError(OSError):
    """A ``bpf(2)`` command the kernel refused; :attr:`command` is its name."""

    command: str = ""

    @classmethod
    def of(cls, err: Optional[int], command: str, message: str) -> BpfError:
        """The error *err* of *command* (``BPF_...``), with *message*."""
        error = cls(err, message)
        error.command = command
        return error


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str = "") -> int:
    """``syscall(__NR_bpf, cmd, attr, sizeof attr)``; the result, or :class:`BpfError`."""
    lib = libc()
    result: int = lib.syscall(
        ctypes.c_long(syscall_number()),
        ctypes.c_int(cmd),
        attr,
        ctypes.c_uint(len(attr)),
    )
    if result < 0:
        err = ctypes.get_errno()
        name = _NAMES.get(cmd, str(cmd))
        where = f"bpf({name})" + (f" {what}" if what else "")
        raise BpfError.of(err, name, f"{where}: {os.strerror(err)}")
    return result


def _attr(*fields: Tuple[int, str, object]) -> ctypes.Array[ctypes.c_char]:
    """A zeroed attribute block with each ``(offset, struct format, value)`` packed in."""
    block = ctypes.create_string_buffer(_ATTR_SIZE)
    for offset, fmt, value in fields:
        struct.pack_into("=" + fmt, block, offset, value)
    return block


def _name(text: str) -> bytes:
    raw = text.encode("ascii")[: OBJ_NAME_LEN - 1]
    return raw + b"\0" * (OBJ_NAME_LEN - len(raw))


def map_create(map_type: int, key_size: int, value_size: int, entries: int, name: str) -> int:
    """``BPF_MAP_CREATE``: a new map's descriptor."""
    attr = _attr(
        (0, "I", map_type),
        (4, "I", key_size),
        (8, "I", value_size),
        (12, "I", entries),
        (28, "16s", _name(name)),  # map_name
    )
    return bpf(MAP_CREATE, attr)


def map_update(map_fd: int, key: bytes, value: bytes) -> None:
    """``BPF_MAP_UPDATE_ELEM`` with ``BPF_ANY``."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    attr = _attr((0, "I", map_fd), (8, "Q", ctypes.addressof(k)), (16, "Q", ctypes.addressof(v)))
    bpf(MAP_UPDATE_ELEM, attr)


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes:
    """``BPF_MAP_LOOKUP_ELEM``: the value stored under *key*."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    attr = _attr((0, "I", map_fd), (8, "Q", ctypes.addressof(k)), (16, "Q", ctypes.addressof(v)))
    bpf(MAP_LOOKUP_ELEM, attr)
    return v.raw


def prog_load(
    prog_type: int, code: bytes, name: str, license: str = "MIT", attach_type: int = 0
) -> int:
    """``BPF_PROG_LOAD``: the loaded program's descriptor.

    *attach_type* is ``expected_attach_type``, which some program types
    need (``BPF_PROG_TYPE_CGROUP_SOCKOPT``: get or set); 0 for the others.

    On a refusal by the verifier (``EINVAL``/``EACCES``) the ``OSError``
    message ends with the verifier's log.
    """
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license.encode("ascii"))
    log = ctypes.create_string_buffer(65536)

    def load(with_log: bool) -> int:
        attr = _attr(
            (0, "I", prog_type),
            (4, "I", len(code) // 8),  # insn_cnt
            (8, "Q", ctypes.addressof(insns)),
            (16, "Q", ctypes.addressof(lic)),
            (24, "I", 1 if with_log else 0),  # log_level
            (28, "I", len(log) if with_log else 0),  # log_size
            (32, "Q", ctypes.addressof(log) if with_log else 0),  # log_buf
            (48, "16s", _name(name)),  # prog_name
            (68, "I", attach_type),  # expected_attach_type
        )
        return bpf(PROG_LOAD, attr)

    try:
        return load(False)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EINVAL):  # ask the verifier why
            raise
        try:
            return load(True)
        except OSError as again:
            # The log's last lines say why; kept on one line.
            lines = log.value.decode("ascii", "replace").strip().splitlines()
            text = " / ".join(line.strip() for line in lines[-3:])
            message = f"{again.strerror}; verifier log: {text}" if text else str(again.strerror)
            raise BpfError.of(again.errno, _NAMES[PROG_LOAD], message) from None


def prog_attach(cgroup_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
    """``BPF_PROG_ATTACH`` of *prog_fd* to the cgroup open at *cgroup_fd*."""
    attr = _attr((0, "I", cgroup_fd), (4, "I", prog_fd), (8, "I", attach_type), (12, "I", flags))
    bpf(PROG_ATTACH, attr)


def prog_detach(cgroup_fd: int, prog_fd: int, attach_type: int) -> None:
    """``BPF_PROG_DETACH`` of exactly *prog_fd* (needed with ``BPF_F_ALLOW_MULTI``)."""
    attr = _attr((0, "I", cgroup_fd), (4, "I", prog_fd), (8, "I", attach_type))
    bpf(PROG_DETACH, attr)


def prog_query(cgroup_fd: int, attach_type: int) -> Tuple[int, List[int]]:
    """``BPF_PROG_QUERY``: ``(attach_flags, program ids)`` attached to the cgroup itself."""
    room = 64
    while True:
        ids = (ctypes.c_uint32 * room)()
        attr = _attr(
            (0, "I", cgroup_fd),
            (4, "I", attach_type),
            (16, "Q", ctypes.addressof(ids)),  # prog_ids
            (24, "I", room),  # prog_cnt
        )
        try:
            bpf(PROG_QUERY, attr)
        except OSError as exc:
            if exc.errno == errno.ENOSPC and room < 65536:  # more than room
                room *= 4
                continue
            raise
        flags, count = struct.unpack_from("=I", attr, 12)[0], struct.unpack_from("=I", attr, 24)[0]
        return flags, list(ids[: min(count, room)])


def _get_fd_by_id(cmd: int, ident: int) -> int:
    return bpf(cmd, _attr((0, "I", ident)), f"id {ident}")


def prog_get_fd_by_id(prog_id: int) -> int:
    """``BPF_PROG_GET_FD_BY_ID``."""
    return _get_fd_by_id(PROG_GET_FD_BY_ID, prog_id)


def map_get_fd_by_id(map_id: int) -> int:
    """``BPF_MAP_GET_FD_BY_ID``."""
    return _get_fd_by_id(MAP_GET_FD_BY_ID, map_id)


class ProgInfo:
    """What ``BPF_OBJ_GET_INFO_BY_FD`` says about a program (the fields used here)."""

    def __init__(self, prog_type: int, prog_id: int, name: str, map_ids: List[int]) -> None:
        self.prog_type = prog_type
        self.prog_id = prog_id
        self.name = name
        self.map_ids = map_ids


def prog_info(prog_fd: int) -> ProgInfo:
    """``BPF_OBJ_GET_INFO_BY_FD`` on a program: type, id, name and map ids."""
    maps = (ctypes.c_uint32 * 16)()
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    struct.pack_into("=I", info, 52, len(maps))  # nr_map_ids
    struct.pack_into("=Q", info, 56, ctypes.addressof(maps))  # map_ids
    attr = _attr((0, "I", prog_fd), (4, "I", len(info)), (8, "Q", ctypes.addressof(info)))
    bpf(OBJ_GET_INFO_BY_FD, attr)
    prog_type, prog_id = struct.unpack_from("=II", info, 0)
    nr_maps = struct.unpack_from("=I", info, 52)[0]
    raw_name = struct.unpack_from("=16s", info, 64)[0]
    name = raw_name.split(b"\0", 1)[0].decode("ascii", "replace")
    return ProgInfo(prog_type, prog_id, name, list(maps[: min(nr_maps, len(maps))]))


class MapInfo:
    """What ``BPF_OBJ_GET_INFO_BY_FD`` says about a map (the fields used here)."""

    def __init__(
        self,
        map_type: int,
        map_id: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        name: str,
    ) -> None:
        self.map_type = map_type
        self.map_id = map_id
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.name = name


#: Bytes of ``struct bpf_map_info`` asked for: up to the end of ``name`` (offset 24).
_MAP_INFO_SIZE = 40


def map_info(map_fd: int) -> MapInfo:
    """``BPF_OBJ_GET_INFO_BY_FD`` on a map: type, id, key and value size, entries, name."""
    info = ctypes.create_string_buffer(_MAP_INFO_SIZE)
    attr = _attr((0, "I", map_fd), (4, "I", len(info)), (8, "Q", ctypes.addressof(info)))
    bpf(OBJ_GET_INFO_BY_FD, attr, "of a map")
    map_type, map_id, key_size, value_size, max_entries = struct.unpack_from("=5I", info, 0)
    raw_name = struct.unpack_from("=16s", info, 24)[0]
    name = raw_name.split(b"\0", 1)[0].decode("ascii", "replace")
    return MapInfo(map_type, map_id, key_size, value_size, max_entries, name)


def close(fd: Optional[int]) -> None:
    """Close *fd* if it is a descriptor (``None`` is ignored)."""
    if fd is not None:
        os.close(fd)

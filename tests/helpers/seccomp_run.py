"""Run a command under a seccomp filter that refuses some system calls.

``python seccomp_run.py pidfd_getfd=EPERM [pidfd_open=ENOSYS ...] -- COMMAND ...``
``python seccomp_run.py setsockopt:6:4=EPERM -- COMMAND ...``

Installs a filter (``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``, after
``PR_SET_NO_NEW_PRIVS``) that makes each named system call fail with the
given errno, as container runtimes' seccomp profiles do, and
``setsockopt:LEVEL:OPTION`` refuse ``setsockopt`` of that one option (level
and option number as decimal ints; every other option passes), then executes
COMMAND, which inherits the filter.  Exits 3 without running COMMAND on an
architecture it has no numbers for, or where the kernel takes no filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from typing import Dict, List, Sequence, Tuple

# AUDIT_ARCH_* (linux/audit.h) of the architectures whose system call
# numbers for these calls are the unified table's.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7, "riscv64": 0xC00000F3}
NUMBERS = {"pidfd_open": 434, "pidfd_getfd": 438}
#: setsockopt's number: x86_64's own table, the generic one elsewhere.
SETSOCKOPT = {"x86_64": 54, "aarch64": 208, "riscv64": 208}
#: Offsets in struct seccomp_data of nr, arch and the low 32 bits (little
#: endian) of args[1] (level) and args[2] (option name).
NR, ARCH, ARG1, ARG2 = 0, 4, 24, 32

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def program(
    arch: int,
    refused: List[Tuple[int, int]],
    options: Sequence[Tuple[int, int, int, int]] = (),
) -> bytes:
    """Classic BPF: on *arch*, each (number, errno) in *refused* fails; all else runs.

    Each ``(setsockopt number, level, option, errno)`` of *options* makes
    ``setsockopt`` of that level and option fail.
    """
    body = [(BPF_LD_W_ABS, 0, 0, NR)]
    for number, err in refused:
        body.append((BPF_JEQ_K, 0, 1, number))
        body.append((BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | err))
    for number, level, option, err in options:
        body += [
            (BPF_LD_W_ABS, 0, 0, NR),
            (BPF_JEQ_K, 0, 5, number),  # not setsockopt: the next rule
            (BPF_LD_W_ABS, 0, 0, ARG1),
            (BPF_JEQ_K, 0, 3, level),
            (BPF_LD_W_ABS, 0, 0, ARG2),
            (BPF_JEQ_K, 0, 1, option),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | err),
        ]
    insns = [(BPF_LD_W_ABS, 0, 0, ARCH), (BPF_JEQ_K, 0, len(body), arch), *body]
    insns.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns)


def main(argv: List[str]) -> int:
    split = argv.index("--")
    rules: Dict[str, str] = dict(arg.split("=", 1) for arg in argv[:split])
    command = argv[split + 1 :]
    arch = AUDIT_ARCH.get(os.uname().machine)
    if arch is None or ctypes.sizeof(ctypes.c_void_p) != 8:
        print(f"no system call numbers for {os.uname().machine}", file=sys.stderr)
        return 3
    refused = [
        (NUMBERS[name], getattr(errno, err)) for name, err in rules.items() if ":" not in name
    ]
    options = []
    for name, err in rules.items():
        if ":" in name:
            call, level, option = name.split(":")
            assert call == "setsockopt", name
            number = SETSOCKOPT[os.uname().machine]
            options.append((number, int(level), int(option), getattr(errno, err)))
    code = program(arch, refused, options)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(code) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    for what, args in (
        ("PR_SET_NO_NEW_PRIVS", (PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0)),
        (
            "PR_SET_SECCOMP",
            (PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog)),
        ),
    ):
        if libc.prctl(*args) != 0:
            err = ctypes.get_errno()
            print(f"no seccomp filter: prctl({what}): {os.strerror(err)}", file=sys.stderr)
            return 3
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

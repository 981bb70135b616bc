"""Borrow another process's descriptors: Linux ``pidfd_open`` + ``pidfd_getfd``.

``pidfd_open(pid, 0)`` (Linux 5.3) returns a descriptor that pins the
process; ``pidfd_getfd(pidfd, targetfd, 0)`` (Linux 5.6) duplicates the
process's descriptor *targetfd* into ours.  Both refer to the same open
file, so ``setsockopt`` on the copy changes the target's socket.

The kernel allows ``pidfd_getfd`` only with ptrace access to the target
(``PTRACE_MODE_ATTACH_REALCREDS``): the same user id and no stricter
Yama ``ptrace_scope``, or ``CAP_SYS_PTRACE``.  Nothing here raises
privileges.

Neither call has a C library wrapper before glibc 2.36, so both go
through ``syscall(2)`` via ctypes with the numbers below.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple, Type, TypeVar

from .._common import version_tuple
from .._libc import libc
from ..constants import INT_MAX
from . import _procfs

__all__ = [
    "CAP_SYS_PTRACE",
    "PERMISSION_HINT",
    "PidfdUnsupportedError",
    "SyscallError",
    "borrowed",
    "check_supported",
    "has_cap_sys_ptrace",
    "is_permission",
    "opened",
    "permission_hint",
    "permission_text",
    "pidfd_getfd",
    "pidfd_open",
    "refusal_reason",
    "seccomp_note",
    "syscall_numbers",
]

# Since Linux 5.1 every architecture numbers new system calls alike (the
# "unified" syscall table): pidfd_open is 434 and pidfd_getfd 438
# (asm-generic/unistd.h, arch/x86/entry/syscalls/syscall_64.tbl, ...).
# Exceptions: alpha adds 110; ia64 (removed in Linux 6.7) adds 1024; the
# three MIPS ABIs add 4000 (o32), 5000 (n64) and 6000 (n32); the x32 ABI
# on x86_64 sets __X32_SYSCALL_BIT (0x40000000).
PIDFD_OPEN = 434
PIDFD_GETFD = 438
_X32_SYSCALL_BIT = 0x40000000


_E = TypeVar("_E", bound="SyscallError")


class SyscallError(OSError):
    """A ``pidfd_open``/``pidfd_getfd`` call failed; ``errno`` is the kernel's.

    ``str(exc)`` names the call and its arguments, e.g.
    ``pidfd_getfd(pid 1234, fd 5): [Errno 1] Operation not permitted``.
    """

    call: str = ""

    @classmethod
    def from_errno(cls: Type[_E], err: int, call: str) -> _E:
        """The error for *call* (with its arguments) that failed with *err*."""
        exc = cls(err, os.strerror(err))
        exc.call = call
        return exc

    def __str__(self) -> str:
        return f"{self.call}: [Errno {self.errno}] {self.strerror}"


class PidfdUnsupportedError(SyscallError):
    """This system cannot borrow descriptors: not Linux, a kernel before 5.6,
    or a seccomp filter that refuses the call with ``ENOSYS``.

    ``errno`` is ``ENOSYS``.  ``blocked`` is true when the kernel is new
    enough to have the call, so a filter made it fail; ``explanation`` then
    says so.
    """

    blocked: bool = False
    explanation: str = ""


def syscall_numbers(
    machine: Optional[str] = None,
    platform: Optional[str] = None,
    pointer_size: Optional[int] = None,
    multiarch: Optional[str] = None,
) -> Tuple[int, int]:
    """``(pidfd_open, pidfd_getfd)`` system call numbers for a Linux ABI.

    Defaults describe the running interpreter: ``sys.platform``,
    ``uname -m`` (the kernel's machine, also for a 32-bit program on a
    64-bit kernel), the size of a C pointer and
    ``sys.implementation._multiarch``, which tells the MIPS n32 ABI from
    o32 and x32 from i386 (without it, the interpreter's ELF header does).  Raises
    :class:`PidfdUnsupportedError` on systems other than Linux.
    """
    plat = sys.platform if platform is None else platform
    if not plat.startswith("linux"):
        raise PidfdUnsupportedError.from_errno(
            errno.ENOSYS, f"pidfd_open/pidfd_getfd (Linux only; this is {plat})"
        )
    if machine is None:
        machine = os.uname().machine
    if pointer_size is None:
        pointer_size = ctypes.sizeof(ctypes.c_void_p)
    if multiarch is None:
        multiarch = str(getattr(sys.implementation, "_multiarch", ""))
    machine = machine.lower()
    offset = 0
    if machine.startswith("alpha"):
        offset = 110
    elif machine.startswith("ia64"):
        offset = 1024
    elif machine.startswith("mips"):
        if pointer_size == 8:
            offset = 5000
        elif "abin32" in multiarch:
            offset = 6000
        else:
            offset = 4000
    elif machine == "x86_64" and pointer_size == 4 and _is_x32(multiarch):
        offset = _X32_SYSCALL_BIT
    return PIDFD_OPEN + offset, PIDFD_GETFD + offset


#: ``e_machine`` of an x86-64 ELF file; an x32 program is a 32-bit ELF file
#: with this machine, an i386 program has ``EM_386`` (3).
_EM_X86_64 = 62


def _is_x32(multiarch: str) -> bool:
    """Whether a 32-bit interpreter on an x86_64 kernel uses the x32 ABI (not i386)."""
    if multiarch:
        return multiarch.endswith("x32")
    try:
        with open("/proc/self/exe", "rb") as exe:
            header = exe.read(20)
    except OSError:
        return False
    return len(header) == 20 and int.from_bytes(header[18:20], "little") == _EM_X86_64


_syscall: Any = None


def _call(number: int, *args: Any) -> int:
    """``syscall(number, args...)``; returns the result or raises with errno."""
    global _syscall
    fn = _syscall
    if fn is None:
        # A fresh function object (item access is not cached on the CDLL), so
        # setting restype here cannot affect anyone else's use of syscall.
        fn = libc()["syscall"]
        fn.restype = ctypes.c_long
        _syscall = fn
    result: int = fn(ctypes.c_long(number), *args)
    if result == -1:
        return -ctypes.get_errno() or -errno.EIO
    return result


#: The Linux version that added each call.
_SINCE = {"pidfd_open": (5, 3), "pidfd_getfd": (5, 6)}


def _kernel_version() -> Optional[Tuple[int, ...]]:
    """``(major, minor)`` of the running kernel (``uname -r``), or ``None``."""
    return version_tuple(os.uname().release)[:2] or None


def _unsupported(call: str) -> PidfdUnsupportedError:
    """The error for *call* (``name(arguments)``) that failed with ``ENOSYS``."""
    name = call.split("(", 1)[0]
    since = _SINCE[name]
    kernel = _kernel_version()
    if kernel is None or kernel < since:
        return PidfdUnsupportedError.from_errno(errno.ENOSYS, f"{call} (needs Linux 5.6 or later)")
    exc = PidfdUnsupportedError.from_errno(errno.ENOSYS, call)
    exc.blocked = True
    exc.explanation = (
        f"{name} returned ENOSYS although this kernel (Linux {os.uname().release}) "
        f"has had it since {since[0]}.{since[1]}: a seccomp filter is blocking it; in "
        "a container, run with a seccomp profile that allows pidfd_open and pidfd_getfd"
    )
    return exc


def _check(result: int, call: str) -> int:
    if result >= 0:
        return result
    err = -result
    if err == errno.ENOSYS:
        raise _unsupported(call)
    raise SyscallError.from_errno(err, call)


def _c_int(value: int, what: str, call: str) -> ctypes.c_int:
    """*value* as a C ``int``; ``ValueError`` where ctypes would wrap it."""
    if not -INT_MAX - 1 <= value <= INT_MAX:
        raise ValueError(f"{call}: {what} {value} does not fit a C int")
    return ctypes.c_int(value)


_numbers: Optional[Tuple[int, int]] = None


def _own_numbers() -> Tuple[int, int]:
    """:func:`syscall_numbers` of the running interpreter, worked out once."""
    global _numbers
    if _numbers is None:
        _numbers = syscall_numbers()
    return _numbers


def pidfd_open(pid: int) -> int:
    """``pidfd_open(pid, 0)``: a new descriptor referring to process *pid*.

    The caller must close it.  Raises :class:`SyscallError` (``ESRCH`` for
    no such process, ``EINVAL`` for a thread id) or
    :class:`PidfdUnsupportedError`; ``ValueError`` for a *pid* that does
    not fit a C ``int``.
    """
    nr_open, _ = _own_numbers()
    call = f"pidfd_open({pid})"
    return _check(_call(nr_open, _c_int(pid, "pid", call), ctypes.c_uint(0)), call)


def pidfd_getfd(pidfd: int, targetfd: int, pid: Optional[int] = None) -> int:
    """``pidfd_getfd(pidfd, targetfd, 0)``: a copy of the process's descriptor.

    The copy has ``FD_CLOEXEC`` set; the caller must close it.  *pid* only
    labels error messages.  Raises :class:`SyscallError` (``EPERM`` without
    ptrace access, ``EBADF`` when *targetfd* is not open, ``ESRCH`` when
    the process has exited) or :class:`PidfdUnsupportedError`.
    """
    _, nr_getfd = _own_numbers()
    who = f"pid {pid}" if pid is not None else f"pidfd {pidfd}"
    call = f"pidfd_getfd({who}, fd {targetfd})"
    args = (_c_int(pidfd, "pidfd", call), _c_int(targetfd, "fd", call), ctypes.c_uint(0))
    return _check(_call(nr_getfd, *args), call)


def check_supported() -> None:
    """Raise :class:`PidfdUnsupportedError` unless this system has ``pidfd_getfd``.

    Probes with ``pidfd_getfd(-1, 0, 0)``: a kernel that has the call
    refuses the bad descriptor with ``EBADF``, an older one (or a seccomp
    filter) says ``ENOSYS``.
    """
    _, nr_getfd = syscall_numbers()
    err = -_call(nr_getfd, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_uint(0))
    if err == errno.ENOSYS:
        raise _unsupported("pidfd_getfd")


@contextmanager
def opened(pid: int) -> Iterator[int]:
    """A pidfd for *pid*, closed when the block ends."""
    pidfd = pidfd_open(pid)
    try:
        yield pidfd
    finally:
        os.close(pidfd)


@contextmanager
def borrowed(pidfd: int, targetfd: int, pid: Optional[int] = None) -> Iterator[int]:
    """A copy of the process's descriptor *targetfd*, closed when the block ends."""
    fd = pidfd_getfd(pidfd, targetfd, pid)
    try:
        yield fd
    finally:
        os.close(fd)


# -- why a borrow was refused ---------------------------------------------

PERMISSION_HINT = (
    "inspecting or changing another process's sockets needs ptrace access to it: "
    "the same user id (and a kernel.yama.ptrace_scope that allows it) or CAP_SYS_PTRACE"
)


def is_permission(exc: OSError) -> bool:
    """Whether *exc* is ``EPERM`` or ``EACCES``."""
    return exc.errno in (errno.EPERM, errno.EACCES)


def permission_text(exc: OSError) -> str:
    """*exc* as a refusal for want of permission, with what would grant it."""
    return f"permission denied ({exc}); {permission_hint()}{seccomp_note()}"


#: ``CAP_SYS_PTRACE`` (linux/capability.h).
CAP_SYS_PTRACE = 19


def has_cap_sys_ptrace() -> bool:
    """Whether this process holds ``CAP_SYS_PTRACE`` (``CapEff`` in /proc)."""
    caps = _procfs.status_field("self", "CapEff")
    try:
        return caps is not None and bool(int(caps, 16) >> CAP_SYS_PTRACE & 1)
    except ValueError:
        return False


def permission_hint() -> str:
    """What ptrace access needs, or, with ``CAP_SYS_PTRACE``, what else refuses it."""
    if has_cap_sys_ptrace():
        return (
            "you have CAP_SYS_PTRACE, so something else refuses it: the process runs in "
            "a user namespace where you hold no capabilities, kernel.yama.ptrace_scope "
            "is 3, or a Linux security module denies ptrace access"
        )
    return PERMISSION_HINT


def seccomp_note() -> str:
    """A note when this process runs under a seccomp filter, else ``""``."""
    mode = _procfs.status_field("self", "Seccomp")
    if mode in ("1", "2"):
        return "; this command runs under a seccomp filter, which may be what refuses it"
    return ""


def refusal_reason(exc: OSError) -> Optional[str]:
    """Why a pidfd call was refused, when it is not for want of permission.

    ``pidfd_open`` checks no permission at all, and ``pidfd_getfd`` only
    ptrace access, which ``CAP_SYS_PTRACE`` grants: if either is refused
    anyway, a seccomp filter or a Linux security module refused it.
    """
    if not (isinstance(exc, SyscallError) and is_permission(exc)):
        return None
    name = exc.call.split("(", 1)[0]
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    if name == "pidfd_open":
        return (
            f"pidfd_open was refused ({code}) although it needs no permission: a seccomp "
            "profile or LSM is blocking it; in a container, run with a seccomp profile "
            "that allows pidfd_open and pidfd_getfd"
        )
    if name != "pidfd_getfd" or not has_cap_sys_ptrace():
        return None
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            yama = f.read().strip()
    except OSError:
        yama = ""
    cause = (
        "kernel.yama.ptrace_scope is 3, which refuses it to everyone"
        if yama == "3"
        else "a seccomp profile or LSM is blocking it"
    )
    return (
        f"pidfd_getfd was refused ({code}) although you have CAP_SYS_PTRACE: {cause}; "
        "in Docker, run with --cap-add=SYS_PTRACE and a seccomp profile that allows "
        "pidfd_getfd"
    )

"""The system side of :mod:`netkeepalive.cgroup`: finding the cgroup v2
hierarchy, resolving a path (the root cgroup only when named), locking a
cgroup, the memory-lock limit, and the one-line errors.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from typing import Iterator, Optional, Tuple

from . import _bpfsys

__all__ = ["CgroupError", "cgroup2_mount", "cgroup_of_pid", "resolve"]

_PRIVILEGE_HINT = (
    "needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN; CAP_BPF with CAP_NET_ADMIN can attach but cannot "
    "read attached programs back); BPF may also be blocked here (kernel lockdown, "
    "seccomp, a container)"
)
_BY_ID_HINT = (
    "opening a program or map that is attached already needs CAP_SYS_ADMIN (CAP_BPF with "
    "CAP_NET_ADMIN only attaches to a cgroup that has no sock_ops program yet)"
)
#: The mount table read by :func:`cgroup2_mount`.
_MOUNTS = "/proc/mounts"


class CgroupError(OSError):
    """What stops a cgroup policy here: privileges, kernel, cgroup v2, path.

    An :class:`OSError` with ``errno`` set; the message is one line that
    names the call and what to do.
    """


# -- cgroup v2 ----------------------------------------------------------------


def _unescape(field: str) -> str:
    """A /proc/mounts field: ``\\040`` and friends back to characters."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup2_mount(mounts: Optional[str] = None) -> str:
    """Where the cgroup v2 hierarchy is mounted (the first ``cgroup2`` in *mounts*).

    *mounts* defaults to ``/proc/mounts``.
    """
    mounts = _MOUNTS if mounts is None else mounts
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2] == "cgroup2":
                    return _unescape(fields[1])
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot read {mounts}: {exc.strerror}") from None
    raise CgroupError(
        errno.ENOENT,
        f"no cgroup v2 hierarchy is mounted (no cgroup2 entry in {mounts}); "
        "cgroup keepalive policies need cgroup v2",
    )


def resolve(path: str) -> Tuple[str, str]:
    """``(directory, name)`` of cgroup *path*.

    *path* is relative to the cgroup2 mount (``system.slice/x.service``),
    a path as in ``/proc/PID/cgroup`` (``/system.slice/x.service``), or a
    full path under the mount.  *name* is the form ``/proc/PID/cgroup``
    uses (``/`` for the root).  The root cgroup, whose policy would reach
    every process on the machine, is only named by ``/`` or the mount
    point written out: any other path that resolves to it (an empty one,
    ``.``, ``x/..``) is a ``ValueError`` saying so.
    """
    if not isinstance(path, str):
        raise TypeError(f"path: expected a str, got {type(path).__name__}")
    written = cgroup2_mount()
    mount = os.path.realpath(written)
    candidates = []
    if os.path.isabs(path):
        candidates.append(path)
    candidates.append(os.path.join(mount, path.lstrip("/")))
    for candidate in candidates:
        real = os.path.realpath(candidate)
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and os.path.isdir(real):
            if not os.path.exists(os.path.join(real, "cgroup.procs")):
                break
            if real == mount and not _names_root(path, written, mount):
                raise ValueError(
                    f"cgroup path {path!r} is the root cgroup: a policy there would reach "
                    f"every process on the machine; to mean that, write '/' (or {written})"
                )
            return real, cgroup_name(real, mount)
    raise CgroupError(
        errno.ENOENT,
        f"no such cgroup: {path!r} (not a directory of the cgroup v2 hierarchy at {mount})",
    )


def _names_root(path: str, *mounts: str) -> bool:
    """Whether *path* names the root cgroup explicitly: ``/`` or a mount point written out
    (``.``, ``x/..``, an empty string and the like are not explicit)."""
    return path == "/" or any(path.rstrip("/") == m.rstrip("/") and m != "/" for m in mounts)


def cgroup_name(directory: str, mount: str) -> str:
    """The cgroup at *directory* under *mount* as ``/proc/PID/cgroup`` names it."""
    return "/" + os.path.relpath(directory, mount) if directory != mount else "/"


def cgroup_of_pid(pid: int) -> str:
    """The cgroup v2 path of process *pid* (the ``0::`` line of /proc/PID/cgroup)."""
    with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n").replace(" (deleted)", "")
    raise CgroupError(errno.ENOENT, f"/proc/{pid}/cgroup has no cgroup v2 (0::) line")


@contextlib.contextmanager
def opened(directory: str) -> Iterator[int]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(cgroup_fd: int, name: str, exclusive: bool = True) -> Iterator[None]:
    """Hold ``flock`` on the cgroup directory: one change of ours at a time per cgroup
    (*exclusive*), and no reading in the middle of one (shared)."""
    with explaining(f"locking cgroup {name} (flock)"):
        fcntl.flock(cgroup_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(cgroup_fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def holding(directory: str, name: str, exclusive: bool = True) -> Iterator[int]:
    """:func:`opened` and :func:`locked`: the cgroup's descriptor, locked."""
    with opened(directory) as cgroup_fd, locked(cgroup_fd, name, exclusive):
        yield cgroup_fd


def explain(exc: OSError, doing: str) -> CgroupError:
    """*exc* from ``bpf(2)`` as a :class:`CgroupError` saying what to do."""
    command = getattr(exc, "command", "")
    if exc.errno == errno.EPERM and command.endswith("_GET_FD_BY_ID"):
        hint = _BY_ID_HINT
    elif exc.errno in (errno.EPERM, errno.EACCES) and "verifier log" not in str(exc):
        hint = _PRIVILEGE_HINT
    elif exc.errno == errno.ENOSYS:
        hint = "this kernel has no bpf(2) system call (built without CONFIG_BPF_SYSCALL?)"
    else:
        hint = ""
    message = f"{doing}: {exc.strerror or exc}"
    if hint:
        message += f"; {hint}"
    return CgroupError(exc.errno or errno.EIO, message)


@contextlib.contextmanager
def explaining(doing: str) -> Iterator[None]:
    """Turn an :class:`OSError` of the block into :func:`explain`'s :class:`CgroupError`."""
    try:
        yield
    except CgroupError:
        raise
    except OSError as exc:
        raise explain(exc, doing) from None


def attach_error(
    exc: OSError, cgroup_fd: int, name: str, attach_type: int = _bpfsys.ATTACH_CGROUP_SOCK_OPS
) -> CgroupError:
    doing = f"attaching to cgroup {name} (BPF_PROG_ATTACH)"
    if exc.errno == errno.EPERM:
        try:
            flags, ids = _bpfsys.prog_query(cgroup_fd, attach_type)
        except OSError:
            flags, ids = 0, []
        if ids and not flags & _bpfsys.F_ALLOW_MULTI:
            sock_ops = attach_type == _bpfsys.ATTACH_CGROUP_SOCK_OPS
            kind = "sock_ops" if sock_ops else "cgroup/setsockopt"
            return CgroupError(
                exc.errno,
                f"{doing}: another {kind} program is attached to cgroup {name} without "
                "BPF_F_ALLOW_MULTI, so none can be added beside it; nothing was attached",
            )
    return explain(exc, doing)


def raise_memlock() -> None:
    """Kernels before 5.11 charge BPF memory to ``RLIMIT_MEMLOCK``: lift it if allowed."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        if soft != resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    except (ImportError, OSError, ValueError):
        pass

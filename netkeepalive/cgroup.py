"""A keepalive policy for every TCP connection of a cgroup (Linux 5.9+ or a backport).

:func:`attach` loads a small ``BPF_PROG_TYPE_SOCK_OPS`` program (see
:mod:`netkeepalive._linux._bpf`) and attaches it to a cgroup v2 directory with
``BPF_F_ALLOW_MULTI``.  From then on, whenever a TCP connection of a
process in that cgroup (or below it) becomes established, on either end,
and when such a process's ``connect()`` is about to send its SYN, the
kernel calls ``bpf_setsockopt`` with ``SO_KEEPALIVE=1`` and the policy's
``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT`` and
``TCP_USER_TIMEOUT``.  ``attach(..., enforce=True)`` adds a
``cgroup/setsockopt`` program that keeps applications from raising them
(:mod:`netkeepalive._linux._enforce`).  The attachment stays until :func:`detach`, the
cgroup is removed, or the machine reboots; no process of ours keeps it.

The policy lives in an array map that :func:`status` reads back from the
kernel.  A program is recognised as ours by that map (see
:func:`program_kind`), never by its name; other programs attached to the
same cgroup are never detached or read.  Attaching and detaching hold a
lock on the cgroup directory (``flock``), so that concurrent calls leave
exactly zero or one program of ours.  The root cgroup (every process on
the machine) is only taken when named explicitly, ``/`` or the mount point.

Needs root (``CAP_SYS_ADMIN`` and ``CAP_NET_ADMIN``; ``CAP_BPF`` with ``CAP_NET_ADMIN``, Linux
5.8+, can load and attach, but finding and reading back programs already
attached needs ``CAP_SYS_ADMIN``) and a kernel whose ``bpf_setsockopt``
takes the keepalive options: all five arrived together in Linux 5.9; an
older release number is probed for a backport (see :func:`attach`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from ._common import VALUE_KNOBS as _VALUE_KNOBS
from ._convert import Milliseconds
from ._linux import _bpf, _bpfsys, _cgroupfs, _enforce, _programs
from ._linux._cgroupfs import CgroupError, cgroup2_mount, cgroup_of_pid, resolve
from ._linux._programs import program_kind

__all__ = [
    "KINDS",
    "MINIMUM_KERNEL",
    "PROGRAM_NAME",
    "CgroupError",
    "Policy",
    "attach",
    "cgroup2_mount",
    "cgroup_of_pid",
    "detach",
    "effective_policy",
    "effective_policy_of",
    "foreign_programs",
    "policies",
    "program_kind",
    "resolve",
    "status",
]

#: Name of the program (and its map) in the kernel, for people reading
#: the kernel's list of programs; ours is recognised by its map (:func:`program_kind`).
PROGRAM_NAME = _programs.PROGRAM_NAME
#: First Linux release whose ``bpf_setsockopt`` accepts ``SO_KEEPALIVE``,
#: ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT`` and
#: ``TCP_USER_TIMEOUT`` (all five added to net/core/filter.c by commit
#: f9bcf96837f1, "bpf: Add SO_KEEPALIVE and related options to
#: bpf_setsockopt", committed to bpf-next on 2020-06-24, after the 5.8 merge
#: window, so first released in 5.9; older kernels return ``-EINVAL`` for
#: each, inside the program, so the policy would silently do nothing).  A
#: lower release number is probed for a backport rather than refused.
MINIMUM_KERNEL = (5, 9)


@dataclass(frozen=True)
class Policy:
    """A cgroup's keepalive policy, read back from the kernel.

    Times in milliseconds and counts, as :class:`netkeepalive.Settings`;
    ``None`` means the policy leaves the connection's own value.
    *enforced*: attached with ``enforce=True`` (the policy is a ceiling for
    the applications' own ``setsockopt`` calls); *clamped*: how many of
    those calls the kernel has lowered to the policy so far (``None``
    unless enforced; not part of equality).  *applied*: new connections
    get the policy; ``False`` when only the enforcing program is left (its
    ``sock_ops`` program was detached by another tool): the applications'
    writes are still clamped, but nothing sets the values.  ``attach``
    again or ``detach``.
    """

    enabled: bool
    idle: Optional[int]
    interval: Optional[int]
    probes: Optional[int]
    user_timeout: Optional[int]
    enforced: bool = False
    clamped: Optional[int] = field(default=None, compare=False)
    applied: bool = True


# -- the kernel ---------------------------------------------------------------


#: Our kinds of program, by BPF program type: what :func:`program_kind` answers.
KINDS = _programs.KINDS


def _check_kernel() -> None:
    """Refuse a kernel whose ``bpf_setsockopt`` does not take the five options
    (see :func:`._linux._cgroup_probe.check_kernel`)."""
    from ._linux._cgroup_probe import check_kernel

    check_kernel(MINIMUM_KERNEL)


def _read_policy(found: _programs.Ours) -> Policy:
    fd = _bpfsys.map_get_fd_by_id(found.map_id)
    try:
        raw = _bpfsys.map_lookup(fd, _bpf.POLICY_KEY, _bpfsys.map_info(fd).value_size)
    finally:
        os.close(fd)
    return _policy(_bpf.policy_from_value(raw))


def _policy(native: Dict[str, Optional[int]]) -> Policy:
    from . import _backends
    from ._convert import from_native

    backend = _backends.backend()

    def public(knob: str) -> Optional[int]:
        value = native.get(knob)
        return None if value is None else from_native(backend.option(knob), value)

    return Policy(
        enabled=bool(native.get("enabled")),
        idle=public("idle"),
        interval=public("interval"),
        probes=public("probes"),
        user_timeout=public("user_timeout"),
    )


def _native(settings: Dict[str, object]) -> Dict[str, Optional[int]]:
    """Check :func:`attach`'s *settings* like :func:`netkeepalive.configure`; kernel units."""
    from . import _backends
    from ._convert import plan

    backend = _backends.backend()
    native: Dict[str, Optional[int]] = {"enabled": 1}
    for knob, _, _, value in plan(backend.option, ((k, settings.get(k)) for k in _VALUE_KNOBS)):
        native[knob] = value
    return native


# -- the public API -----------------------------------------------------------


def attach(
    path: str,
    *,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
    enforce: bool = False,
) -> Policy:
    """Give every TCP connection established from now on in cgroup *path* this policy.

    ``SO_KEEPALIVE=1`` and each value given (milliseconds and counts, as
    :func:`netkeepalive.configure`; checked the same way, so a bad one is a
    ``ValueError``/``TypeError`` and nothing is loaded).  An earlier policy
    of ours on *path* is replaced: the new program is attached before the
    old one is detached, so there is no moment without one; in the moment
    both are attached the new one runs last, so its values win.  Returns
    the policy read back from the kernel.  On a release before Linux 5.9
    the kernel is first probed with a test connection in a throwaway
    cgroup (a backport is accepted).  Environment problems raise
    :class:`CgroupError`; a *path* that only resolves to the root cgroup
    (``""``, ``"."``, ``"x/.."``) is a ``ValueError`` (see :func:`resolve`).
    Concurrent calls on one cgroup take turns (``flock`` on its
    directory).  On any failure the cgroup keeps what it had
    (the new program is detached again), except when detaching an earlier
    policy fails after part of it is gone: the new one then stays in force.

    With *enforce* (Linux 5.3+) a second program, at ``setsockopt()``, makes
    the policy a ceiling for the applications in the cgroup: turning
    keepalive off, a longer idle time or interval, more probes, or a user
    timeout of 0 or longer than the policy's is lowered to the policy (see
    :mod:`netkeepalive._linux._enforce`).  Without it, an enforcing program of an
    earlier policy is removed with that policy.
    """
    if not isinstance(enforce, bool):
        raise TypeError(f"enforce: expected a bool, got {type(enforce).__name__}")
    native = _native(
        {"idle": idle, "interval": interval, "probes": probes, "user_timeout": user_timeout}
    )
    directory, name = resolve(path)
    with _cgroupfs.holding(directory, name) as cgroup_fd:
        with _cgroupfs.explaining(f"reading the programs attached to cgroup {name}"):
            old = _programs.all_ours(cgroup_fd)
        return _attach_locked(cgroup_fd, name, native, old, enforce)


def _attach_locked(
    cgroup_fd: int,
    name: str,
    native: Dict[str, Optional[int]],
    old: List[Tuple[int, int]],
    enforce: bool,
) -> Policy:
    """:func:`attach` once the cgroup is locked and *old* (our programs there) is known."""
    _check_kernel()  # after the query, so that missing privileges are named first
    _cgroupfs.raise_memlock()
    map_fd = prog_fd = None
    opened: List[int] = []  # further descriptors to close: the enforcing program's
    new: List[Tuple[int, int]] = []  # (attach type, program) attached so far
    removed = 0
    try:
        with _cgroupfs.explaining("loading the keepalive program"):
            map_fd = _programs.policy_map()
            _bpfsys.map_update(map_fd, _bpf.POLICY_KEY, _bpf.policy_value(native))
            prog_fd = _bpfsys.prog_load(
                _bpfsys.PROG_TYPE_SOCK_OPS, _bpf.keepalive_program(map_fd), PROGRAM_NAME
            )
        programs = [(_programs.SOCK_OPS, prog_fd)]
        if enforce:
            with _cgroupfs.explaining("loading the enforcing program (cgroup/setsockopt)"):
                opened += _enforce.load(map_fd, PROGRAM_NAME)
            programs.append((_programs.SETSOCKOPT, opened[0]))
        for attach_type, fd in programs:
            try:
                _bpfsys.prog_attach(cgroup_fd, fd, attach_type, _bpfsys.F_ALLOW_MULTI)
            except OSError as exc:
                raise _cgroupfs.attach_error(exc, cgroup_fd, name, attach_type) from None
            new.append((attach_type, fd))
        with _cgroupfs.explaining(f"reading the policy of cgroup {name} back"):
            raw = _bpfsys.map_lookup(map_fd, _bpf.POLICY_KEY, _bpf.POLICY_VALUE_SIZE)
        # A cgroup runs its programs in the order they were attached, so the
        # new one runs after the old ones and its values win from here on.
        for attach_type, prog_id in old:
            _detach_ids(cgroup_fd, [prog_id], name, attach_type)
            removed += 1
        policy = _policy(_bpf.policy_from_value(raw))
        return replace(policy, enforced=True, clamped=0) if enforce else policy
    except BaseException as exc:
        # Undo only while the old policy is whole: once part of it is gone,
        # the new programs are the ones in force and stay.
        if new and not removed:
            try:
                for attach_type, fd in reversed(new):
                    _bpfsys.prog_detach(cgroup_fd, fd, attach_type)
            except OSError as undo:
                if not isinstance(exc, CgroupError):
                    raise
                raise CgroupError(
                    exc.errno,
                    f"{exc.strerror}; detaching the new program again failed too "
                    f"({undo.strerror}), so it stays attached and its values win",
                ) from None
        raise
    finally:
        _bpfsys.close(prog_fd)
        _bpfsys.close(map_fd)
        for fd in opened:
            os.close(fd)


def _detach_ids(
    cgroup_fd: int, prog_ids: List[int], name: str, attach_type: int = _programs.SOCK_OPS
) -> None:
    for prog_id in prog_ids:
        with _cgroupfs.explaining(f"detaching program {prog_id} from cgroup {name}"):
            fd = _programs.program_fd(prog_id)
            if fd is None:
                continue
            try:
                _bpfsys.prog_detach(cgroup_fd, fd, attach_type)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            finally:
                os.close(fd)


def detach(path: str) -> bool:
    """Remove our policy from cgroup *path*; whether there was one.

    Only our programs (:func:`program_kind`) are detached, whatever their
    names, the enforcing one (if any) first; connections already established
    keep the values they were given.
    """
    directory, name = resolve(path)
    with (
        _cgroupfs.holding(directory, name) as cgroup_fd,
        _cgroupfs.explaining(f"detaching from cgroup {name}"),
    ):
        ours = _programs.all_ours(cgroup_fd)
        for attach_type, prog_id in ours:
            _detach_ids(cgroup_fd, [prog_id], name, attach_type)
    return bool(ours)


def status(path: str) -> Optional[Policy]:
    """The policy attached to cgroup *path* itself, read from the kernel, or ``None``."""
    directory, name = resolve(path)
    with _cgroupfs.opened(directory) as cgroup_fd:
        return _status_fd(cgroup_fd, name)


def foreign_programs(path: str) -> List[Tuple[int, str]]:
    """``(id, name)`` of each program attached to cgroup *path* at a hook of ours
    (sock_ops, setsockopt) that is not ours."""
    directory, name = resolve(path)
    doing = f"reading the programs attached to cgroup {name}"
    with (
        _cgroupfs.holding(directory, name, exclusive=False) as cgroup_fd,
        _cgroupfs.explaining(doing),
    ):
        return [
            (info.prog_id, info.name)
            for hook in (_programs.SOCK_OPS, _programs.SETSOCKOPT)
            for info in _programs.programs(cgroup_fd, hook)[1]
        ]


def _status_fd(cgroup_fd: int, name: str) -> Optional[Policy]:
    """Our policy on the cgroup; with several of ours (an interrupted re-attach),
    combined in the order the kernel runs them: the last attached runs last."""
    found: Optional[Policy] = None
    doing = f"reading the policy of cgroup {name}"
    with _cgroupfs.locked(cgroup_fd, name, exclusive=False), _cgroupfs.explaining(doing):
        for ours in _programs.ours(cgroup_fd):
            found = _combine(found, _read_policy(ours))
        enforcers = _programs.ours(cgroup_fd, _programs.SETSOCKOPT)
        if found is None and enforcers:
            # Only the enforcing program is left: it shares the policy's map.
            found = replace(_read_policy(enforcers[-1]), applied=False)
        counts = [_enforce.clamped(ours.info) for ours in enforcers]
    if found is not None and counts:
        found = replace(found, enforced=True, clamped=sum(counts))
    return found


def _combine(earlier: Optional[Policy], later: Policy) -> Policy:
    """What a connection gets when *earlier*'s program runs and then *later*'s:
    the later one's values, and the earlier one's where the later leaves a value alone."""
    if earlier is None:
        return later
    kept: Dict[str, Any] = {
        knob: getattr(earlier, knob) for knob in _VALUE_KNOBS if getattr(later, knob) is None
    }
    return replace(later, **kept)


def policies() -> List[Tuple[str, Policy]]:
    """``(cgroup, policy)`` for every cgroup with a policy of ours, walking the hierarchy."""
    mount = os.path.realpath(cgroup2_mount())
    found: List[Tuple[str, Policy]] = []
    for directory, subdirs, _ in os.walk(mount):
        subdirs.sort()
        name = _cgroupfs.cgroup_name(directory, mount)
        try:
            with _cgroupfs.opened(directory) as cgroup_fd:
                policy = _status_fd(cgroup_fd, name)
        except FileNotFoundError:  # removed while walking
            continue
        if policy is not None:
            found.append((name, policy))
    return found


def effective_policy(pid: int) -> Optional[Tuple[str, Policy]]:
    """The policy new connections of process *pid* get, and the cgroup it comes from.

    Programs of a cgroup and of its ancestors all run (the process's own
    cgroup first); when several have our policy, the one nearest the root
    runs last, so its values win.  ``None`` when none applies.
    """
    return effective_policy_of(cgroup_of_pid(pid))


def effective_policy_of(name: str) -> Optional[Tuple[str, Policy]]:
    """:func:`effective_policy` for the cgroup *name* (as ``/proc/PID/cgroup`` gives it)."""
    chain = []
    while True:
        chain.append(name or "/")
        if name in ("/", ""):
            break
        name = os.path.dirname(name.rstrip("/")) or "/"
    found: Optional[Tuple[str, Policy]] = None
    for candidate in chain:  # own cgroup first, as the kernel runs them
        try:
            policy = status(candidate)
        except CgroupError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        if policy is None or not policy.applied:
            continue  # nothing sets the values of a policy that is not applied
        # This one runs later: its values win where it has any.
        found = (candidate, _combine(found[1] if found else None, policy))
    return found

"""``netkeepalive show`` and ``netkeepalive set``: running processes' sockets (Linux).

Each TCP socket of a process is found in ``/proc`` (see
:mod:`netkeepalive._linux._procfs`), borrowed with ``pidfd_getfd`` (see
:mod:`netkeepalive._linux._pidfd`), checked to still be that TCP socket, read or
changed with the public API (:func:`netkeepalive.get_settings`,
:func:`netkeepalive.configure`; the unanswered probes from ``TCP_INFO``)
and closed again straight away.  The copy shares the process's open socket,
so a change applies to the process's connection.

A socket the process closes while the command runs is reported as gone
and is not a failure; a descriptor number the process reused meanwhile is
never touched (checked by inode, type and protocol).

Exit status: 0 when every socket that still exists was read (and
changed); 1 when any process or socket failed, each named on standard
error with the reason, or the output could not be written; 2 for
argument errors and where borrowing descriptors is not supported (not
Linux, a kernel before 5.6, a seccomp filter answering ``ENOSYS``); 141
(128 + ``SIGPIPE``) when standard output is a pipe that was closed.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import socket
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .. import _backends
from .._api import configure, get_settings
from .._linux import _pidfd, _procfs
from ..constants import INT_MAX, Option, Unit
from ..tcp_info import TCP_STATES, state_and_probes
from ._options import add_settings_arguments, number_from, settings_from_args
from ._report import CLOSED_PIPE, Outcome, Result, exit_status, report_errors, write_output

if TYPE_CHECKING:
    from ..cgroup import Policy

__all__ = ["add_arguments", "run"]


_SO_TYPE = Option("type", socket.SOL_SOCKET, "SO_TYPE", socket.SO_TYPE, Unit.COUNT, 0, INT_MAX)
_SO_PROTOCOL = Option(
    "protocol",
    socket.SOL_SOCKET,
    "SO_PROTOCOL",
    getattr(socket, "SO_PROTOCOL", 38),
    Unit.COUNT,
    0,
    INT_MAX,
)

# -- arguments -------------------------------------------------------------


#: ``--no-enable``: leave SO_KEEPALIVE as it is on each socket.
_LEAVE = "leave"
#: The knobs that matter only while keepalive is on: giving one turns it on.
_KEEPALIVE_KNOBS = ("idle", "interval", "probes")

_pid = number_from(1, "a process id")
_fd_number = number_from(0, "a descriptor number")


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of subcommand *name* (``show`` or ``set``) to *parser*."""
    parser.set_defaults(retrofit_parser=parser)
    if name == "show":
        parser.description = (
            "List every TCP socket of the given processes (default: every process "
            "you may inspect) with its keepalive settings, read from the kernel."
        )
        parser.add_argument(
            "pids", nargs="*", type=_pid, metavar="PID", help="process ids (default: all)"
        )
    else:
        parser.description = (
            "Change the keepalive settings of a running process's TCP sockets "
            "(all of them, or the --fd ones) and print each socket's settings "
            "before and after, read back from the kernel."
        )
        parser.add_argument("pid", type=_pid, metavar="PID", help="process id")
        parser.add_argument(
            "--fd",
            type=_fd_number,
            action="append",
            dest="fds",
            metavar="FD",
            help="only this descriptor of the process (repeatable)",
        )
        onoff = parser.add_mutually_exclusive_group()
        onoff.add_argument(
            "--enable",
            dest="enable",
            action="store_const",
            const=True,
            help="turn keepalive on (SO_KEEPALIVE=1)",
        )
        onoff.add_argument(
            "--disable",
            dest="enable",
            action="store_const",
            const=False,
            help="turn keepalive off (SO_KEEPALIVE=0)",
        )
        onoff.add_argument(
            "--no-enable",
            dest="enable",
            action="store_const",
            const=_LEAVE,
            help="leave SO_KEEPALIVE as it is; default: turn keepalive on when "
            "--idle, --interval, --probes or --detect-within is given, else leave it",
        )
        add_settings_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


# -- reading and changing one socket ---------------------------------------


class _SocketGone(Exception):
    """The descriptor no longer refers to the socket found in /proc."""


class _NotTcp(_SocketGone):
    """The descriptor is the listed socket's inode but not a TCP socket."""


def _verify(fd: int, sock: _procfs.TcpSocket) -> None:
    """Make sure borrowed *fd* is still the TCP socket *sock* (not a reused number)."""
    if os.fstat(fd).st_ino != sock.inode:
        raise _SocketGone(
            "closed by the process; its number now refers to something else, left alone"
        )
    backend = _backends.backend()
    sock_type = backend.get(fd, _SO_TYPE)
    protocol = backend.get(fd, _SO_PROTOCOL)
    if sock_type != socket.SOCK_STREAM or protocol != socket.IPPROTO_TCP:
        raise _NotTcp(f"fd {sock.fd} is not a TCP socket")


@contextmanager
def _borrowed(pidfd: int, sock: _procfs.TcpSocket) -> Iterator[int]:
    """A checked copy of *sock*'s descriptor; :class:`_SocketGone` if it was closed."""
    try:
        fd = _pidfd.pidfd_getfd(pidfd, sock.fd, sock.pid)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise _SocketGone("closed by the process") from None
        raise
    try:
        _verify(fd, sock)
        yield fd
    finally:
        os.close(fd)


def _read(fd: int) -> Dict[str, Any]:
    s = get_settings(fd)
    return {
        "enabled": s.enabled,
        "idle_ms": s.idle,
        "interval_ms": s.interval,
        "probes": s.probes,
        "user_timeout_ms": s.user_timeout,
        "unanswered_probes": state_and_probes(fd)[1],
    }


def _address(sock: socket.socket, peer: bool) -> str:
    """An address as ``/proc/net/tcp`` rows are shown: ``host:port``, ``-`` for none."""
    try:
        host, port = (sock.getpeername() if peer else sock.getsockname())[:2]
    except OSError:  # ENOTCONN: no peer
        return "-"
    if port == 0 and host in ("0.0.0.0", "::"):
        return "-"
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def _located(fd: int, sock: _procfs.TcpSocket) -> _procfs.TcpSocket:
    """*sock* with addresses and state read from borrowed *fd* when /proc had none.

    A socket missing from its process's namespace's tables was opened in
    another network namespace (or is neither bound nor connected):
    ``getsockname``, ``getpeername`` and ``TCP_INFO`` say where it is.
    """
    if sock.state is not None:
        return sock
    view = socket.socket(fileno=fd)
    try:
        local, remote = _address(view, False), _address(view, True)
    finally:
        view.detach()
    number = state_and_probes(fd)[0]
    state = TCP_STATES.get(number, f"UNKNOWN({number})")
    return dataclasses.replace(sock, local=local, remote=remote, state=state)


def _find(
    pid: int, only_fds: Optional[List[int]], tables: Optional[_procfs.Tables] = None
) -> Tuple[List[_procfs.TcpSocket], Optional[str]]:
    """The process's TCP sockets, or a reason why they cannot be listed."""
    try:
        return _procfs.tcp_sockets(pid, only_fds=only_fds, tables=tables), None
    except PermissionError as exc:
        where = exc.filename or f"/proc/{pid}/fd"
        return [], f"permission denied reading {where} ({exc.strerror}); {_pidfd.permission_hint()}"
    except FileNotFoundError:
        return [], "no such process"
    except OSError as exc:
        return [], f"cannot list its descriptors: {exc}"


def _open_process(pid: int, outcome: Outcome, quiet_if_gone: bool = False) -> Optional[int]:
    """``pidfd_open(pid)``, or ``None`` with the reason recorded in *outcome*.

    A process that no longer exists is not recorded when *quiet_if_gone*
    (it exited while the list of processes was made).
    """
    try:
        return _pidfd.pidfd_open(pid)
    except _pidfd.PidfdUnsupportedError:
        raise
    except OSError as exc:
        blocked = _pidfd.refusal_reason(exc)
        if blocked is not None:
            outcome.blocked.setdefault(blocked, []).append(pid)
            return None
        if exc.errno == errno.ESRCH:
            if not quiet_if_gone:
                outcome.errors.append((pid, "no such process"))
            return None
        group = _procfs.thread_group(pid)
        if group is not None and group != pid:
            outcome.errors.append((pid, f"a thread of process {group}, not a process"))
        else:
            outcome.errors.append((pid, str(exc)))
        return None


def _refused(pid: int, exc: OSError, outcome: Outcome, suffix: str = "") -> None:
    """Record that borrowing from *pid* was refused (nothing borrowed yet)."""
    blocked = _pidfd.refusal_reason(exc)
    if blocked is not None:
        outcome.blocked.setdefault(blocked + suffix, []).append(pid)
    else:
        outcome.errors.append((pid, _pidfd.permission_text(exc) + suffix))


# -- show ------------------------------------------------------------------


def _show_process(pid: int, outcome: Outcome, listing_all: bool, tables: _procfs.Tables) -> None:
    pidfd = _open_process(pid, outcome, quiet_if_gone=listing_all)
    if pidfd is None:
        return
    try:
        socks, reason = _find(pid, None, tables)
        if reason is not None:
            if not (listing_all and reason == "no such process"):
                outcome.errors.append((pid, reason))
            return
        results: List[Result] = []
        gone: List[Tuple[_procfs.TcpSocket, str]] = []
        for sock in socks:
            result = Result(sock)
            try:
                with _borrowed(pidfd, sock) as fd:
                    result.sock = _located(fd, sock)
                    result.before = _read(fd)
            except _pidfd.PidfdUnsupportedError:
                raise
            except _NotTcp as exc:
                result.error = str(exc)
            except _SocketGone as exc:
                gone.append((sock, str(exc)))
                continue
            except OSError as exc:
                if (
                    isinstance(exc, _pidfd.SyscallError)
                    and _pidfd.is_permission(exc)
                    and not results
                ):
                    # The same for every descriptor: report the process once.
                    _refused(pid, exc, outcome)
                    return
                if exc.errno == errno.ESRCH:
                    if not listing_all:
                        outcome.errors.append((pid, "exited while being inspected"))
                    return  # listing all: exited meanwhile, not a failure of ours
                result.error = str(exc)
            results.append(result)
        outcome.results.extend(results)
        outcome.gone.extend(gone)
        outcome.inspected += 1
    finally:
        os.close(pidfd)


def _run_show(args: argparse.Namespace) -> int:
    listing_all = not args.pids
    pids: Sequence[int] = _procfs.list_pids() if listing_all else list(dict.fromkeys(args.pids))
    outcome = Outcome()
    tables = _procfs.Tables()
    for pid in pids:
        _show_process(pid, outcome, listing_all, tables)
    outcome.cgroup_policies = _cgroup_policies([r.sock.pid for r in outcome.results])
    written = write_output(outcome, args.json, changed=False)
    failed = report_errors("show", outcome, listing_all)
    return exit_status("show", written, failed)


# -- set -------------------------------------------------------------------


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Dict[str, int]:
    """Check every value with the library's own converter before anything is touched."""
    given = settings_from_args(args, parser)
    if not given and args.enable in (None, _LEAVE):
        parser.error(
            "nothing to change: give --enable, --disable, --idle, --interval, "
            "--probes, --user-timeout or --detect-within"
        )
    return given


def _run_set(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    given = _validate(args, parser)
    pid: int = args.pid
    outcome = Outcome()
    pidfd = _open_process(pid, outcome)
    if pidfd is not None:
        try:
            _set_process(args, pid, pidfd, given, outcome)
        finally:
            os.close(pidfd)
    written = write_output(outcome, args.json, changed=True)
    failed = report_errors("set", outcome, False)
    change = None
    if written is not None:
        # What stays although the report failed; a closed pipe is quiet
        # only when nothing changed.
        changed = [r for r in outcome.results if r.after is not None and r.error is None]
        if changed:
            change = f"the change was applied to {len(changed)} socket(s) of pid {pid}"
        elif written is not CLOSED_PIPE:
            change = "nothing was changed"
    turned_on = [r for r in outcome.results if r.turned_on and r.error is None]
    if turned_on and written is None:
        names = [f"--{k}" for k in _KEEPALIVE_KNOBS if k in given]
        if getattr(args, "detect_within", None) is not None:
            names = ["--detect-within"]
        which = " and ".join(names) + (" were" if len(names) > 1 else " was")
        print(
            f"netkeepalive set: keepalive turned on (SO_KEEPALIVE=1) on {len(turned_on)} "
            f"socket(s) of pid {pid} where it was off, because {which} given; "
            "--no-enable leaves it as it is",
            file=sys.stderr,
        )
    return exit_status("set", written, failed, change)


def _set_process(
    args: argparse.Namespace, pid: int, pidfd: int, given: Dict[str, int], outcome: Outcome
) -> None:
    socks, reason = _find(pid, args.fds)
    if reason is not None:
        outcome.errors.append((pid, reason + "; nothing was changed"))
        return
    if args.fds:
        found = {s.fd for s in socks}
        missing = [fd for fd in dict.fromkeys(args.fds) if fd not in found]
        if missing:
            for fd in missing:
                outcome.errors.append(
                    (pid, f"fd {fd}: {_procfs.what_is(pid, fd)}; nothing was changed")
                )
            return
    # One pass: borrow, check, read, change, read back.  Borrowing needs
    # the same permission for every descriptor, so a refusal comes with the
    # first one, before anything was changed.
    borrowed_any = False
    for sock in socks:
        result = Result(sock)
        try:
            with _borrowed(pidfd, sock) as fd:
                borrowed_any = True
                result.sock = _located(fd, sock)
                result.before = _read(fd)
                enable = _enable_for(args.enable, given, result.before["enabled"])
                try:
                    configure(fd, enable=enable, only_lower=False, **given)
                finally:
                    result.after = _read(fd)
                result.turned_on = result.after["enabled"] and not result.before["enabled"]
        except _pidfd.PidfdUnsupportedError:
            raise
        except _NotTcp as exc:
            result.error = str(exc)
        except _SocketGone as exc:
            outcome.gone.append((sock, str(exc)))
            continue
        except OSError as exc:
            syscall = isinstance(exc, _pidfd.SyscallError)
            if syscall and _pidfd.is_permission(exc) and not borrowed_any:
                _refused(pid, exc, outcome, "; nothing was changed")
                return
            if syscall and not borrowed_any and exc.errno not in (errno.ESRCH, errno.EBADF):
                # Any other refusal of the first borrow (a seccomp filter's
                # EINVAL...) would come with every socket: said once.
                outcome.errors.append((pid, f"{exc}{_pidfd.seccomp_note()}; nothing was changed"))
                return
            if isinstance(exc, _pidfd.SyscallError) and exc.errno == errno.ESRCH:
                outcome.errors.append((pid, "exited while its sockets were being changed"))
                return
            result.error = str(exc)
        outcome.results.append(result)
    outcome.inspected += 1


def _enable_for(option: object, given: Dict[str, int], enabled: bool) -> bool:
    """SO_KEEPALIVE for one socket: ``--enable``/``--disable``, else on when a
    keepalive time or count is given (unless ``--no-enable``), else as it is."""
    if option is True or option is False:
        return option
    if option is None and any(k in given for k in _KEEPALIVE_KNOBS):
        return True
    return enabled


# -- cgroup policies (netkeepalive cgroup) ----------------------------------


def _cgroup_policies(pids: Sequence[int]) -> List[Tuple[int, str, Policy]]:
    """The cgroup keepalive policy new connections of each process get, if any.

    ``(pid, cgroup, policy)`` per process with one (see
    :func:`netkeepalive.cgroup.effective_policy`); nothing where it cannot
    be read (no cgroup v2, no privileges for ``bpf(2)``).
    """
    from .. import cgroup

    found: List[Tuple[int, str, Policy]] = []
    seen: Dict[str, Optional[Tuple[str, Policy]]] = {}
    for pid in dict.fromkeys(pids):
        try:
            name = cgroup.cgroup_of_pid(pid)
        except OSError:
            continue
        if name not in seen:
            try:
                seen[name] = cgroup.effective_policy_of(name)
            except OSError:
                seen[name] = None
        hit = seen[name]
        if hit is not None:
            found.append((pid, *hit))
    return found


# -- entry point -----------------------------------------------------------


def run(name: str, args: argparse.Namespace) -> int:
    """Run ``show`` or ``set`` (*name*) with parsed *args*; return the exit status."""
    parser: argparse.ArgumentParser = args.retrofit_parser
    try:
        _pidfd.check_supported()
        if name == "show":
            return _run_show(args)
        return _run_set(args, parser)
    except _pidfd.PidfdUnsupportedError as exc:
        if exc.blocked:
            print(f"netkeepalive {name}: blocked here: {exc.explanation}", file=sys.stderr)
            return 2
        print(
            f"netkeepalive {name}: not supported here: borrowing another process's "
            f"sockets needs Linux 5.6 or later ({exc})",
            file=sys.stderr,
        )
        return 2

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
import io
import json
import os
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    TextIO,
    Tuple,
)

from .. import _backends
from .._api import configure, get_settings
from .._linux import _pidfd, _procfs
from ..constants import INT_MAX, Option, Unit
from ..tcp_info import TCP_STATES, state_and_probes
from . import _report as _output
from ._options import add_settings_arguments, settings_from_args

if TYPE_CHECKING:
    from ..cgroup import Policy

__all__ = ["add_arguments", "run"]


_PERMISSION_HINT = (
    "inspecting or changing another process's sockets needs ptrace access to it: "
    "the same user id (and a kernel.yama.ptrace_scope that allows it) or CAP_SYS_PTRACE"
)

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

_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("enabled", "KEEPALIVE"),
    ("idle_ms", "IDLE(ms)"),
    ("interval_ms", "INTERVAL(ms)"),
    ("probes", "PROBES"),
    ("user_timeout_ms", "USER_TIMEOUT(ms)"),
    ("unanswered_probes", "UNANSWERED"),
)


# -- arguments -------------------------------------------------------------


def _number_from(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a decimal int in *minimum*..INT_MAX, else "not *what*".

    Process ids and descriptors reach the kernel as a C ``int``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= INT_MAX:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
        return value

    return parse


#: ``--no-enable``: leave SO_KEEPALIVE as it is on each socket.
_LEAVE = "leave"
#: The knobs that matter only while keepalive is on: giving one turns it on.
_KEEPALIVE_KNOBS = ("idle", "interval", "probes")

_pid = _number_from(1, "a process id")
_fd_number = _number_from(0, "a descriptor number")


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


@dataclass
class _Result:
    sock: _procfs.TcpSocket
    before: Optional[Dict[str, Any]] = None
    after: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    #: ``set``: keepalive was off and this call turned it on.
    turned_on: bool = False

    def as_json(self, changed: bool) -> Dict[str, Any]:
        out = _socket_json(self.sock)
        if changed:
            out["before"] = self.before
            out["after"] = self.after
        else:
            out["keepalive"] = self.before
        out["error"] = self.error
        return out


def _socket_json(s: _procfs.TcpSocket) -> Dict[str, Any]:
    return {
        "pid": s.pid,
        "fd": s.fd,
        "inode": s.inode,
        "family": s.family,
        "local": s.local,
        "remote": s.remote,
        "state": s.state,
    }


@dataclass
class _Outcome:
    results: List[_Result] = field(default_factory=list)
    #: (pid, message) for processes that could not be inspected at all.
    errors: List[Tuple[int, str]] = field(default_factory=list)
    #: Sockets the process closed before they could be read (or changed),
    #: with what was found.
    gone: List[Tuple[_procfs.TcpSocket, str]] = field(default_factory=list)
    #: A system call refused whatever the process: message -> pids, said once.
    blocked: Dict[str, List[int]] = field(default_factory=dict)
    #: Processes whose sockets could be looked at (or that had none).
    inspected: int = 0
    #: ``show`` only: (pid, cgroup, policy) per process with a cgroup
    #: keepalive policy (see :func:`_cgroup_policies`).
    cgroup_policies: Optional[List[Tuple[int, str, Policy]]] = None


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


def _is_permission(exc: OSError) -> bool:
    return exc.errno in (errno.EPERM, errno.EACCES)


def _describe(sock: _procfs.TcpSocket) -> str:
    where = f"{_known(sock.local)} -> {_known(sock.remote)}, {_known(sock.state)}"
    return f"pid {sock.pid} fd {sock.fd} ({where})"


def _find(
    pid: int, only_fds: Optional[List[int]], tables: Optional[_procfs.Tables] = None
) -> Tuple[List[_procfs.TcpSocket], Optional[str]]:
    """The process's TCP sockets, or a reason why they cannot be listed."""
    try:
        return _procfs.tcp_sockets(pid, only_fds=only_fds, tables=tables), None
    except PermissionError as exc:
        where = exc.filename or f"/proc/{pid}/fd"
        return [], f"permission denied reading {where} ({exc.strerror}); {_permission_hint()}"
    except FileNotFoundError:
        return [], "no such process"
    except OSError as exc:
        return [], f"cannot list its descriptors: {exc}"


def _permission_text(exc: OSError) -> str:
    return f"permission denied ({exc}); {_permission_hint()}{_seccomp_note()}"


# -- refusals that are not about permission ---------------------------------

#: ``CAP_SYS_PTRACE`` (linux/capability.h).
_CAP_SYS_PTRACE = 19


def _has_cap_sys_ptrace() -> bool:
    caps = _procfs.status_field("self", "CapEff")
    try:
        return caps is not None and bool(int(caps, 16) >> _CAP_SYS_PTRACE & 1)
    except ValueError:
        return False


def _permission_hint() -> str:
    """What ptrace access needs, or, with ``CAP_SYS_PTRACE``, what else refuses it."""
    if _has_cap_sys_ptrace():
        return (
            "you have CAP_SYS_PTRACE, so something else refuses it: the process runs in "
            "a user namespace where you hold no capabilities, kernel.yama.ptrace_scope "
            "is 3, or a Linux security module denies ptrace access"
        )
    return _PERMISSION_HINT


def _seccomp_note() -> str:
    mode = _procfs.status_field("self", "Seccomp")
    if mode in ("1", "2"):
        return "; this command runs under a seccomp filter, which may be what refuses it"
    return ""


def _blocked(exc: OSError) -> Optional[str]:
    """Why a pidfd call was refused, when it is not for want of permission.

    ``pidfd_open`` checks no permission at all, and ``pidfd_getfd`` only
    ptrace access, which ``CAP_SYS_PTRACE`` grants: if either is refused
    anyway, a seccomp filter or a Linux security module refused it.
    """
    if not (isinstance(exc, _pidfd.SyscallError) and _is_permission(exc)):
        return None
    name = exc.call.split("(", 1)[0]
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    if name == "pidfd_open":
        return (
            f"pidfd_open was refused ({code}) although it needs no permission: a seccomp "
            "profile or LSM is blocking it; in a container, run with a seccomp profile "
            "that allows pidfd_open and pidfd_getfd"
        )
    if name != "pidfd_getfd" or not _has_cap_sys_ptrace():
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


def _open_process(pid: int, outcome: _Outcome, quiet_if_gone: bool = False) -> Optional[int]:
    """``pidfd_open(pid)``, or ``None`` with the reason recorded in *outcome*.

    A process that no longer exists is not recorded when *quiet_if_gone*
    (it exited while the list of processes was made).
    """
    try:
        return _pidfd.pidfd_open(pid)
    except _pidfd.PidfdUnsupportedError:
        raise
    except OSError as exc:
        blocked = _blocked(exc)
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


def _refused(pid: int, exc: OSError, outcome: _Outcome, suffix: str = "") -> None:
    """Record that borrowing from *pid* was refused (nothing borrowed yet)."""
    blocked = _blocked(exc)
    if blocked is not None:
        outcome.blocked.setdefault(blocked + suffix, []).append(pid)
    else:
        outcome.errors.append((pid, _permission_text(exc) + suffix))


# -- show ------------------------------------------------------------------


def _show_process(pid: int, outcome: _Outcome, listing_all: bool, tables: _procfs.Tables) -> None:
    pidfd = _open_process(pid, outcome, quiet_if_gone=listing_all)
    if pidfd is None:
        return
    try:
        socks, reason = _find(pid, None, tables)
        if reason is not None:
            if not (listing_all and reason == "no such process"):
                outcome.errors.append((pid, reason))
            return
        results: List[_Result] = []
        gone: List[Tuple[_procfs.TcpSocket, str]] = []
        for sock in socks:
            result = _Result(sock)
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
                if isinstance(exc, _pidfd.SyscallError) and _is_permission(exc) and not results:
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
    outcome = _Outcome()
    tables = _procfs.Tables()
    for pid in pids:
        _show_process(pid, outcome, listing_all, tables)
    outcome.cgroup_policies = _cgroup_policies([r.sock.pid for r in outcome.results])
    written = _write_output(outcome, args.json, changed=False)
    failed = _report_errors("show", outcome, listing_all)
    return _exit_status("show", written, failed)


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
    outcome = _Outcome()
    pidfd = _open_process(pid, outcome)
    if pidfd is not None:
        try:
            _set_process(args, pid, pidfd, given, outcome)
        finally:
            os.close(pidfd)
    written = _write_output(outcome, args.json, changed=True)
    failed = _report_errors("set", outcome, False)
    if written is not None and written is not _CLOSED_PIPE:
        changed = [r for r in outcome.results if r.after is not None and r.error is None]
        applied = (
            f"the change was applied to {len(changed)} socket(s) of pid {pid}"
            if changed
            else "nothing was changed"
        )
        written = f"{written}; {applied}"
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
    return _exit_status("set", written, failed)


def _set_process(
    args: argparse.Namespace, pid: int, pidfd: int, given: Dict[str, int], outcome: _Outcome
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
                outcome.errors.append((pid, f"fd {fd}: {_what_is(pid, fd)}; nothing was changed"))
            return
    # One pass: borrow, check, read, change, read back.  Borrowing needs
    # the same permission for every descriptor, so a refusal comes with the
    # first one, before anything was changed.
    borrowed_any = False
    for sock in socks:
        result = _Result(sock)
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
            if syscall and _is_permission(exc) and not borrowed_any:
                _refused(pid, exc, outcome, "; nothing was changed")
                return
            if syscall and not borrowed_any and exc.errno not in (errno.ESRCH, errno.EBADF):
                # Any other refusal of the first borrow (a seccomp filter's
                # EINVAL...) would come with every socket: said once.
                outcome.errors.append((pid, f"{exc}{_seccomp_note()}; nothing was changed"))
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


def _what_is(pid: int, fd: int) -> str:
    """Why descriptor *fd* of *pid* is not something ``set`` may change."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:
        return "not an open descriptor of the process"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if target.startswith("socket:"):
        try:
            kind = os.getxattr(f"/proc/{pid}/fd/{fd}", "system.sockprotoname")
            target = kind.rstrip(b"\0").decode("ascii", "replace") + " " + target
        except OSError:
            pass
    return f"not a TCP socket ({target})"


# -- output ----------------------------------------------------------------


def _known(value: Optional[str]) -> str:
    """An address or state, ``?`` where it could not be read."""
    return "?" if value is None else value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "on"
    if value is False:
        return "off"
    return str(value)


def _print_table(outcome: _Outcome, changed: bool, out: TextIO) -> None:
    header = ["PID", "FD", "STATE", "LOCAL", "REMOTE"]
    if changed:
        header.append("WHEN")
    header.extend(title for _, title in _COLUMNS)
    rows: List[List[str]] = []
    for result in outcome.results:
        s = result.sock
        base = [str(s.pid), str(s.fd), _known(s.state), _known(s.local), _known(s.remote)]
        readings = (
            (("before", result.before), ("after", result.after))
            if changed
            else (("", result.before),)
        )
        for when, values in readings:
            row = list(base)
            if changed:
                row.append(when)
            for key, _ in _COLUMNS:
                row.append("?" if values is None else _cell(values[key]))
            rows.append(row)
    if not rows:
        if not outcome.errors and not outcome.blocked:
            print("no TCP sockets found", file=out)
        return
    lines = [header, *rows]
    widths = [max(map(len, column)) for column in zip(*lines)]
    numeric = {0, 1} | set(range(len(header) - len(_COLUMNS), len(header)))
    line = "  ".join(
        f"{{:{'>' if i in numeric else '<'}{width}}}" for i, width in enumerate(widths)
    )
    out.write("".join(line.format(*row).rstrip() + "\n" for row in lines))
    for pid, where, policy in outcome.cgroup_policies or ():
        out.write(f"pid {pid}: cgroup {where}: {policy.describe()}\n")


def _print_json(outcome: _Outcome, changed: bool, out: TextIO) -> None:
    errors = list(outcome.errors)
    errors += [(pid, message) for message, pids in outcome.blocked.items() for pid in pids]
    document: Dict[str, Any] = {
        "sockets": [result.as_json(changed) for result in outcome.results],
        "errors": [{"pid": pid, "error": message} for pid, message in errors],
        "gone": [dict(_socket_json(sock), reason=reason) for sock, reason in outcome.gone],
    }
    if outcome.cgroup_policies is not None:
        document["cgroup_policies"] = [
            {"pid": pid, "cgroup": where, "keepalive": policy.as_json()}
            for pid, where, policy in outcome.cgroup_policies
        ]
    # One string, then one write: json.dump() with an indent writes each
    # of its many small pieces separately, which takes a third more time.
    out.write(json.dumps(document, indent=2) + "\n")


#: What :func:`_write_output` returns when standard output is a closed pipe.
_CLOSED_PIPE = _output.CLOSED_PIPE


def _write_output(outcome: _Outcome, as_json: bool, changed: bool) -> Optional[str]:
    """Print the table or JSON (see :func:`._report.write`); ``None`` when written,
    else what went wrong."""
    text = io.StringIO()
    if as_json:
        _print_json(outcome, changed, text)
    else:
        _print_table(outcome, changed, text)
    return _output.write(text.getvalue())


def _exit_status(name: str, written: Optional[str], failed: bool) -> int:
    return _output.exit_status(name, written, failed)


def _report_errors(name: str, outcome: _Outcome, listing_all: bool) -> bool:
    """Print every failure on stderr; return whether any counts as a failure.

    When every process is listed, the ones you may not inspect are summed
    up and do not count, unless no process at all could be inspected.
    """
    failed = False
    denied: List[int] = []
    for pid, message in outcome.errors:
        if listing_all and message.startswith("permission denied"):
            denied.append(pid)
            continue
        failed = True
        print(f"netkeepalive {name}: pid {pid}: {message}", file=sys.stderr)
    for message, pids in outcome.blocked.items():
        failed = True
        who = f"pid {pids[0]}" if len(pids) == 1 else f"{len(pids)} processes"
        print(f"netkeepalive {name}: {who}: {message}", file=sys.stderr)
    if denied:
        shown = ", ".join(str(pid) for pid in denied)
        print(
            f"netkeepalive {name}: not inspected, permission denied: "
            f"{len(denied)} process(es): {shown}; {_permission_hint()}{_seccomp_note()}",
            file=sys.stderr,
        )
        if not outcome.inspected:
            failed = True
    for sock, reason in outcome.gone:
        print(f"netkeepalive {name}: pid {sock.pid} fd {sock.fd}: {reason}", file=sys.stderr)
    for result in outcome.results:
        if result.error is not None:
            failed = True
            print(f"netkeepalive {name}: {_describe(result.sock)}: {result.error}", file=sys.stderr)
    return failed


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

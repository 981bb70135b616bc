"""``netkeepalive show`` and ``netkeepalive set``: running processes' sockets (Linux).

Each TCP socket of a process is found in ``/proc`` (see
:mod:`netkeepalive._procfs`), borrowed with ``pidfd_getfd`` (see
:mod:`netkeepalive._pidfd`), checked to still be that TCP socket, read or
changed with the public API (:func:`netkeepalive.get_settings`,
:func:`netkeepalive.configure`, :func:`netkeepalive.tcp_info.get_tcp_info`)
and closed again straight away.  The copy shares the process's open socket,
so a change applies to the process's connection.

Exit status: 0 when every socket was read (and changed); 1 when any
process or socket failed, each named on standard error with the reason;
2 for argument errors and where borrowing descriptors is not supported
(not Linux, or a kernel before 5.6).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from . import _pidfd, _procfs, _sys
from ._api import configure, get_settings
from ._convert import to_native
from .constants import INT_MAX, Option, Unit
from .errors import UnsupportedOptionError
from .tcp_info import get_tcp_info

__all__ = ["add_arguments", "run"]

#: Knobs ``set`` takes, in the order its options are listed.
_KNOBS = ("idle", "interval", "probes", "user_timeout")

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


#: Process ids and descriptors reach the kernel as a C ``int``.
_INT_MAX = 2**31 - 1


def _number_from(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a decimal int in *minimum*.._INT_MAX, else "not *what*"."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= _INT_MAX:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
        return value

    return parse


_pid = _number_from(1, "a process id")
_fd_number = _number_from(0, "a descriptor number")


def _integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


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
            help="turn keepalive off (SO_KEEPALIVE=0); default: leave it as it is",
        )
        parser.add_argument(
            "--idle",
            type=_integer,
            metavar="MS",
            help="TCP_KEEPIDLE: idle time before the first probe, ms (whole seconds on Linux)",
        )
        parser.add_argument(
            "--interval",
            type=_integer,
            metavar="MS",
            help="TCP_KEEPINTVL: time between probes, ms (whole seconds on Linux)",
        )
        parser.add_argument(
            "--probes",
            type=_integer,
            metavar="N",
            help="TCP_KEEPCNT: unanswered probes before the connection is dropped",
        )
        parser.add_argument(
            "--user-timeout",
            type=_integer,
            metavar="MS",
            dest="user_timeout",
            help="TCP_USER_TIMEOUT: how long sent data may stay unacknowledged, ms "
            "(0 = system default)",
        )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


# -- reading and changing one socket ---------------------------------------


class _SocketGone(Exception):
    """The descriptor no longer refers to the socket found in /proc."""


@dataclass
class _Result:
    sock: _procfs.TcpSocket
    before: Optional[Dict[str, Any]] = None
    after: Optional[Dict[str, Any]] = None
    error: Optional[str] = None

    def as_json(self, changed: bool) -> Dict[str, Any]:
        s = self.sock
        out: Dict[str, Any] = {
            "pid": s.pid,
            "fd": s.fd,
            "inode": s.inode,
            "family": s.family,
            "local": s.local,
            "remote": s.remote,
            "state": s.state,
        }
        if changed:
            out["before"] = self.before
            out["after"] = self.after
        else:
            out["keepalive"] = self.before
        out["error"] = self.error
        return out


@dataclass
class _Outcome:
    results: List[_Result] = field(default_factory=list)
    #: (pid, message) for processes that could not be inspected at all.
    errors: List[Tuple[int, str]] = field(default_factory=list)


def _verify(fd: int, sock: _procfs.TcpSocket) -> None:
    """Make sure borrowed *fd* is still the TCP socket *sock* (not a reused number)."""
    if os.fstat(fd).st_ino != sock.inode:
        raise _SocketGone(
            f"fd {sock.fd} was closed by the process and now refers to something else"
        )
    backend = _sys.backend()
    sock_type = backend.get(fd, _SO_TYPE)
    protocol = backend.get(fd, _SO_PROTOCOL)
    if sock_type != socket.SOCK_STREAM or protocol != socket.IPPROTO_TCP:
        raise _SocketGone(f"fd {sock.fd} is not a TCP socket")


def _read(fd: int) -> Dict[str, Any]:
    s = get_settings(fd)
    return {
        "enabled": s.enabled,
        "idle_ms": s.idle,
        "interval_ms": s.interval,
        "probes": s.probes,
        "user_timeout_ms": s.user_timeout,
        "unanswered_probes": get_tcp_info(fd).probes,
    }


def _is_permission(exc: OSError) -> bool:
    return exc.errno in (errno.EPERM, errno.EACCES)


def _describe(sock: _procfs.TcpSocket) -> str:
    return f"pid {sock.pid} fd {sock.fd} ({sock.local} -> {sock.remote}, {sock.state})"


def _find(pid: int, only_fds: Optional[List[int]]) -> Tuple[List[_procfs.TcpSocket], Optional[str]]:
    """The process's TCP sockets, or a reason why they cannot be listed."""
    try:
        return _procfs.tcp_sockets(pid, only_fds=only_fds), None
    except PermissionError as exc:
        where = exc.filename or f"/proc/{pid}/fd"
        return [], f"permission denied reading {where} ({exc.strerror}); {_PERMISSION_HINT}"
    except FileNotFoundError:
        return [], "no such process"
    except OSError as exc:
        return [], f"cannot list its descriptors: {exc}"


def _permission_text(exc: OSError) -> str:
    return f"permission denied ({exc}); {_PERMISSION_HINT}"


# -- show ------------------------------------------------------------------


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
        gone = exc.errno == errno.ESRCH
        if not (quiet_if_gone and gone):
            outcome.errors.append((pid, "no such process" if gone else str(exc)))
        return None


def _show_process(pid: int, outcome: _Outcome, listing_all: bool) -> None:
    pidfd = _open_process(pid, outcome, quiet_if_gone=listing_all)
    if pidfd is None:
        return
    try:
        socks, reason = _find(pid, None)
        if reason is not None:
            if not (listing_all and reason == "no such process"):
                outcome.errors.append((pid, reason))
            return
        for sock in socks:
            result = _Result(sock)
            outcome.results.append(result)
            try:
                with _pidfd.borrowed(pidfd, sock.fd, pid) as fd:
                    _verify(fd, sock)
                    result.before = _read(fd)
            except _pidfd.PidfdUnsupportedError:
                raise
            except _SocketGone as exc:
                result.error = str(exc)
            except OSError as exc:
                if _is_permission(exc):
                    # The same for every descriptor: report the process once.
                    outcome.results.remove(result)
                    outcome.errors.append((pid, _permission_text(exc)))
                    return
                if listing_all and exc.errno == errno.ESRCH:
                    # Exited while the list was made: not a failure of ours.
                    outcome.results = [r for r in outcome.results if r.sock.pid != pid]
                    return
                result.error = str(exc)
    finally:
        os.close(pidfd)


def _run_show(args: argparse.Namespace) -> int:
    listing_all = not args.pids
    pids: Sequence[int] = _procfs.list_pids() if listing_all else args.pids
    outcome = _Outcome()
    for pid in pids:
        _show_process(pid, outcome, listing_all)
    policies = _cgroup_policies([r.sock.pid for r in outcome.results])
    if args.json:
        _print_json(outcome, changed=False, cgroup_policies=policies)
    else:
        _print_table(outcome, changed=False)
        for entry in policies:
            print(f"pid {entry['pid']}: cgroup {entry['cgroup']}: {entry['text']}")
    failed = _report_errors("show", outcome, listing_all)
    return 1 if failed else 0


# -- set -------------------------------------------------------------------


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Dict[str, int]:
    """Check every value with the library's own converter before anything is touched."""
    backend = _sys.backend()
    given: Dict[str, int] = {}
    for knob in _KNOBS:
        value = getattr(args, knob)
        if value is None:
            continue
        label = "--" + knob.replace("_", "-")
        try:
            to_native(backend.option(knob), value, label)
        except (TypeError, ValueError) as exc:
            parser.error(str(exc))
        except UnsupportedOptionError as exc:
            parser.error(f"{label}: {exc}")
        given[knob] = value
    if not given and args.enable is None:
        parser.error(
            "nothing to change: give --enable, --disable, --idle, --interval, "
            "--probes or --user-timeout"
        )
    return given


def _run_set(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    given = _validate(args, parser)
    pid: int = args.pid
    outcome = _Outcome()
    pidfd = _open_process(pid, outcome)
    if pidfd is None:
        return _finish_set(args, outcome)
    try:
        _set_process(args, pid, pidfd, given, outcome)
    finally:
        os.close(pidfd)
    return _finish_set(args, outcome)


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
    # Phase 1: borrow and check every socket before changing any.
    for sock in socks:
        try:
            with _pidfd.borrowed(pidfd, sock.fd, pid) as fd:
                _verify(fd, sock)
        except _pidfd.PidfdUnsupportedError:
            raise
        except _SocketGone as exc:
            outcome.errors.append((pid, f"{exc}; nothing was changed"))
            return
        except OSError as exc:
            text = _permission_text(exc) if _is_permission(exc) else f"{_describe(sock)}: {exc}"
            outcome.errors.append((pid, f"{text}; nothing was changed"))
            return
    # Phase 2: change each, reading it back before and after.
    for sock in socks:
        result = _Result(sock)
        outcome.results.append(result)
        try:
            with _pidfd.borrowed(pidfd, sock.fd, pid) as fd:
                _verify(fd, sock)
                result.before = _read(fd)
                enable = args.enable if args.enable is not None else result.before["enabled"]
                try:
                    configure(fd, enable=enable, only_lower=False, **given)
                finally:
                    result.after = _read(fd)
        except _pidfd.PidfdUnsupportedError:
            raise
        except (_SocketGone, OSError) as exc:
            result.error = str(exc)


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


def _finish_set(args: argparse.Namespace, outcome: _Outcome) -> int:
    if args.json:
        _print_json(outcome, changed=True)
    else:
        _print_table(outcome, changed=True)
    return 1 if _report_errors("set", outcome, False) else 0


# -- output ----------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "on"
    if value is False:
        return "off"
    return str(value)


def _print_table(outcome: _Outcome, changed: bool, out: Optional[TextIO] = None) -> None:
    out = sys.stdout if out is None else out
    header = ["PID", "FD", "STATE", "LOCAL", "REMOTE"]
    if changed:
        header.append("WHEN")
    header.extend(title for _, title in _COLUMNS)
    rows: List[List[str]] = []
    for result in outcome.results:
        s = result.sock
        base = [str(s.pid), str(s.fd), s.state, s.local, s.remote]
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
        if not outcome.errors:
            print("no TCP sockets found", file=out)
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {0, 1} | set(range(len(header) - len(_COLUMNS), len(header)))
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip(), file=out)


def _print_json(
    outcome: _Outcome, changed: bool, cgroup_policies: Optional[List[Dict[str, Any]]] = None
) -> None:
    document: Dict[str, Any] = {
        "sockets": [result.as_json(changed) for result in outcome.results],
        "errors": [{"pid": pid, "error": message} for pid, message in outcome.errors],
    }
    if cgroup_policies is not None:
        document["cgroup_policies"] = [
            {k: v for k, v in entry.items() if k != "text"} for entry in cgroup_policies
        ]
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _report_errors(name: str, outcome: _Outcome, listing_all: bool) -> bool:
    """Print every failure on stderr; return whether any counts as a failure."""
    failed = False
    denied: List[int] = []
    for pid, message in outcome.errors:
        if listing_all and message.startswith("permission denied"):
            denied.append(pid)
            continue
        failed = True
        print(f"netkeepalive {name}: pid {pid}: {message}", file=sys.stderr)
    if denied:
        shown = ", ".join(str(pid) for pid in denied)
        print(
            f"netkeepalive {name}: not inspected, permission denied: "
            f"{len(denied)} process(es): {shown}; {_PERMISSION_HINT}",
            file=sys.stderr,
        )
    for result in outcome.results:
        if result.error is not None:
            failed = True
            print(f"netkeepalive {name}: {_describe(result.sock)}: {result.error}", file=sys.stderr)
    return failed


# -- cgroup policies (netkeepalive cgroup) ----------------------------------


def _cgroup_policies(pids: Sequence[int]) -> List[Dict[str, Any]]:
    """The cgroup keepalive policy new connections of each process get, if any.

    ``{"pid", "cgroup", "keepalive", "text"}`` per process with one (see
    :func:`netkeepalive.cgroup.effective_policy`); nothing where it cannot
    be read (no cgroup v2, no privileges for ``bpf(2)``).
    """
    from . import cgroup

    found: List[Dict[str, Any]] = []
    seen: Dict[str, Optional[Tuple[str, Any]]] = {}
    for pid in dict.fromkeys(pids):
        try:
            name = cgroup.cgroup_of_pid(pid)
        except OSError:
            continue
        if name not in seen:
            try:
                seen[name] = cgroup.effective_policy(pid)
            except OSError:
                seen[name] = None
        hit = seen[name]
        if hit is not None:
            where, policy = hit
            entry = {"pid": pid, "cgroup": where, "keepalive": policy.as_json()}
            found.append(dict(entry, text=policy.describe()))
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
        print(
            f"netkeepalive {name}: not supported here: borrowing another process's "
            f"sockets needs Linux 5.6 or later ({exc})",
            file=sys.stderr,
        )
        return 2

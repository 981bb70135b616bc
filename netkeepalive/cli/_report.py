"""What every command prints: tables, JSON, the exit status, and what happens
when standard output fails.

Every ``netkeepalive`` command writes its report through :func:`write`:
the text goes to the descriptor in full, or the reason it could not
(:data:`CLOSED_PIPE`, a full disk, standard output closed) comes back.
A write is never cut short silently: under ``PYTHONUNBUFFERED=1`` the
interpreter's own text layer ignores a short write (what a pipe whose
reader goes away part-way returns), so the bytes are written here, in a
loop, until all are out or the kernel refuses.  :func:`exit_status` turns
the outcome into the command's exit status and, where a change was made,
says on standard error that the change stands and only the report failed.
No traceback in any case.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, TextIO, Tuple

from .._linux import _procfs
from .._linux._pidfd import permission_hint, seccomp_note

if TYPE_CHECKING:
    from ..cgroup import Policy

__all__ = [
    "CLOSED_PIPE",
    "COLUMNS",
    "EXIT_CLOSED_PIPE",
    "Outcome",
    "OutputFailed",
    "Report",
    "Result",
    "cell",
    "complain",
    "describe_policy",
    "describe_socket",
    "enforcement_json",
    "exit_status",
    "known",
    "policy_json",
    "print_json",
    "print_table",
    "printable",
    "report_errors",
    "socket_json",
    "write",
    "write_output",
]

#: What :func:`write` returns when standard output is a pipe nobody reads any more.
CLOSED_PIPE = "closed pipe"
#: 128 + ``SIGPIPE``: what a shell reports for a command a closed pipe ended.
EXIT_CLOSED_PIPE = 128 + 13


class OutputFailed(Exception):
    """Raised by :class:`Report` when standard output cannot take more; :attr:`reason` why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write(text: str) -> Optional[str]:
    """Write *text* to standard output in full; ``None``, or why it could not.

    On failure standard output is pointed at ``/dev/null``, so that nothing
    is written there (or fails) again, also not at interpreter exit.
    """
    out = sys.stdout
    if out is None:
        return "standard output is closed"
    try:
        try:
            fd = out.fileno()
        except (OSError, ValueError, AttributeError):
            fd = -1  # a stream without a descriptor (a test's capture, StringIO)
        if fd < 0:
            out.write(text)
            out.flush()
        else:
            out.flush()  # anything printed earlier goes first
            encoding = getattr(out, "encoding", None) or "utf-8"
            errors = getattr(out, "errors", None) or "strict"
            _write_fd(fd, text.encode(encoding, errors))
    except BrokenPipeError:
        _discard(out)
        return CLOSED_PIPE
    except (OSError, ValueError) as exc:  # ValueError: a closed file object
        _discard(out)
        if isinstance(exc, OSError) and exc.errno == errno.EBADF:
            return "standard output is closed"
        return str(exc)
    return None


def _discard(out: TextIO) -> None:
    """Point *out*'s descriptor at ``/dev/null``, if it has one."""
    try:
        fd = out.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def complain(line: str) -> None:
    """*line* on standard error, as one line (see :func:`printable`); nothing
    if that cannot be written either."""
    err = sys.stderr
    if err is None:
        return
    try:
        err.write(printable(line) + "\n")
        err.flush()
    except (OSError, ValueError):
        pass


def exit_status(
    command: str, failure: Optional[str], failed: bool = False, change: Optional[str] = None
) -> int:
    """The exit status of *command* after :func:`write` returned *failure*.

    0 when written and nothing *failed*, else 1; :data:`EXIT_CLOSED_PIPE`
    for a closed pipe, quietly when nothing changed (its reader chose to
    stop), else with one line on standard error saying what stays.  Any
    other write failure is one line on standard error, ending with
    *change* (what the command did, which stays) when there is one.
    """
    if failure == CLOSED_PIPE:
        if change:
            complain(f"netkeepalive {command}: the output pipe was closed; {change}")
        return EXIT_CLOSED_PIPE
    if failure is not None:
        line = f"netkeepalive {command}: cannot write the output: {failure}"
        complain(f"{line}; {change}" if change else line)
        return 1
    return 1 if failed else 0


class Report:
    """A text stream for a command that reports as it goes (``demo``).

    Each :meth:`write` goes straight out in full through :func:`write`;
    a failure raises :class:`OutputFailed`, for the command to end with
    :func:`exit_status`.
    """

    def write(self, text: str) -> int:
        """Write *text* now; :class:`OutputFailed` if it cannot be."""
        failure = write(text)
        if failure is not None:
            raise OutputFailed(failure)
        return len(text)

    def flush(self) -> None:
        """Nothing is held back: :meth:`write` has written it already."""


# -- show and set: the sockets of running processes --------------------------


COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("enabled", "KEEPALIVE"),
    ("idle_ms", "IDLE(ms)"),
    ("interval_ms", "INTERVAL(ms)"),
    ("probes", "PROBES"),
    ("user_timeout_ms", "USER_TIMEOUT(ms)"),
    ("unanswered_probes", "UNANSWERED"),
)


@dataclass
class Result:
    sock: _procfs.TcpSocket
    before: Optional[Dict[str, Any]] = None
    after: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    #: ``set``: keepalive was off and this call turned it on.
    turned_on: bool = False

    def as_json(self, changed: bool) -> Dict[str, Any]:
        out = socket_json(self.sock)
        if changed:
            out["before"] = self.before
            out["after"] = self.after
        else:
            out["keepalive"] = self.before
        out["error"] = self.error
        return out


def socket_json(s: _procfs.TcpSocket) -> Dict[str, Any]:
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
class Outcome:
    results: List[Result] = field(default_factory=list)
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
    #: keepalive policy (see :func:`netkeepalive.cli._retrofit._cgroup_policies`).
    cgroup_policies: Optional[List[Tuple[int, str, Policy]]] = None


def describe_socket(sock: _procfs.TcpSocket) -> str:
    where = f"{known(sock.local)} -> {known(sock.remote)}, {known(sock.state)}"
    return f"pid {sock.pid} fd {sock.fd} ({where})"


def known(value: Optional[str]) -> str:
    """An address or state, ``?`` where it could not be read."""
    return "?" if value is None else value


def printable(name: str) -> str:
    """*name* for a line of text: control characters escaped (``\\n``, ``\\x1b``).

    A cgroup directory may be named with a carriage return or an escape
    sequence; the text reports keep one entry on one line (every line on
    standard error goes through :func:`complain`, which applies this), and
    JSON keeps the name as it is.
    """
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "on"
    if value is False:
        return "off"
    return str(value)


def print_table(outcome: Outcome, changed: bool, out: TextIO) -> None:
    header = ["PID", "FD", "STATE", "LOCAL", "REMOTE"]
    if changed:
        header.append("WHEN")
    header.extend(title for _, title in COLUMNS)
    rows: List[List[str]] = []
    for result in outcome.results:
        s = result.sock
        base = [str(s.pid), str(s.fd), known(s.state), known(s.local), known(s.remote)]
        readings = (
            (("before", result.before), ("after", result.after))
            if changed
            else (("", result.before),)
        )
        for when, values in readings:
            row = list(base)
            if changed:
                row.append(when)
            for key, _ in COLUMNS:
                row.append("?" if values is None else cell(values[key]))
            rows.append(row)
    if not rows:
        if not outcome.errors and not outcome.blocked:
            print("no TCP sockets found", file=out)
        return
    lines = [header, *rows]
    widths = [max(map(len, column)) for column in zip(*lines)]
    numeric = {0, 1} | set(range(len(header) - len(COLUMNS), len(header)))
    line = "  ".join(
        f"{{:{'>' if i in numeric else '<'}{width}}}" for i, width in enumerate(widths)
    )
    out.write("".join(line.format(*row).rstrip() + "\n" for row in lines))
    for pid, where, policy in outcome.cgroup_policies or ():
        out.write(f"pid {pid}: cgroup {printable(where)}: {describe_policy(policy)}\n")


def print_json(outcome: Outcome, changed: bool, out: TextIO) -> None:
    errors = list(outcome.errors)
    errors += [(pid, message) for message, pids in outcome.blocked.items() for pid in pids]
    document: Dict[str, Any] = {
        "sockets": [result.as_json(changed) for result in outcome.results],
        "errors": [{"pid": pid, "error": message} for pid, message in errors],
        "gone": [dict(socket_json(sock), reason=reason) for sock, reason in outcome.gone],
    }
    if outcome.cgroup_policies is not None:
        document["cgroup_policies"] = [
            {"pid": pid, "cgroup": where, "keepalive": policy_json(policy)}
            for pid, where, policy in outcome.cgroup_policies
        ]
    # One string, then one write: json.dump() with an indent writes each
    # of its many small pieces separately, which takes a third more time.
    out.write(json.dumps(document, indent=2) + "\n")


def write_output(outcome: Outcome, as_json: bool, changed: bool) -> Optional[str]:
    """Print the table or JSON (see :func:`write`); ``None`` when written,
    else what went wrong."""
    text = io.StringIO()
    if as_json:
        print_json(outcome, changed, text)
    else:
        print_table(outcome, changed, text)
    return write(text.getvalue())


def report_errors(name: str, outcome: Outcome, listing_all: bool) -> bool:
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
            f"{len(denied)} process(es): {shown}; {permission_hint()}{seccomp_note()}",
            file=sys.stderr,
        )
        if not outcome.inspected:
            failed = True
    for sock, reason in outcome.gone:
        print(f"netkeepalive {name}: pid {sock.pid} fd {sock.fd}: {reason}", file=sys.stderr)
    for result in outcome.results:
        if result.error is not None:
            failed = True
            print(
                f"netkeepalive {name}: {describe_socket(result.sock)}: {result.error}",
                file=sys.stderr,
            )
    return failed


# -- cgroup policies ---------------------------------------------------------


def policy_json(policy: Policy) -> Dict[str, Any]:
    """The field names of ``netkeepalive show --json``'s ``keepalive`` object."""
    return {
        "enabled": policy.enabled,
        "idle_ms": policy.idle,
        "interval_ms": policy.interval,
        "probes": policy.probes,
        "user_timeout_ms": policy.user_timeout,
    }


#: What a policy whose sock_ops program another tool detached lacks.
NOT_APPLIED = (
    "not applied to new connections (its sock_ops program is gone; attach again or detach)"
)


def enforcement_json(policy: Policy) -> Dict[str, Any]:
    """``{"enabled": bool, "clamped": int or None}``: the ``enforce`` object."""
    return {"enabled": policy.enforced, "clamped": policy.clamped}


def describe_policy(policy: Policy) -> str:
    """One line: ``keepalive on, idle 60000 ms, ...[; enforced, N writes clamped]``."""
    parts = ["keepalive " + ("on" if policy.enabled else "off")]
    for label, value, unit in (
        ("idle", policy.idle, " ms"),
        ("interval", policy.interval, " ms"),
        ("probes", policy.probes, ""),
        ("user timeout", policy.user_timeout, " ms"),
    ):
        if value is not None:
            parts.append(f"{label} {value}{unit}")
    text = ", ".join(parts)
    if policy.enforced:
        text += "; enforced"
        if policy.clamped is not None:
            text += f", {policy.clamped} write{'' if policy.clamped == 1 else 's'} clamped"
    if not policy.applied:
        text += f"; {NOT_APPLIED}"
    return text

"""Writing a command's report to standard output, and what to do when that fails.

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
import os
import sys
from typing import Optional, TextIO

__all__ = [
    "CLOSED_PIPE",
    "EXIT_CLOSED_PIPE",
    "OutputFailed",
    "Report",
    "complain",
    "exit_status",
    "write",
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
    """*line* on standard error; nothing if that cannot be written either."""
    err = sys.stderr
    if err is None:
        return
    try:
        err.write(line + "\n")
        err.flush()
    except (OSError, ValueError):
        pass


def exit_status(
    command: str, failure: Optional[str], failed: bool = False, change: Optional[str] = None
) -> int:
    """The exit status of *command* after :func:`write` returned *failure*.

    0 when written and nothing *failed*, else 1; :data:`EXIT_CLOSED_PIPE`
    for a closed pipe (quietly: its reader chose to stop).  Any other
    write failure is one line on standard error, ending with *change*
    (what the command did, which stays) when there is one.
    """
    if failure == CLOSED_PIPE:
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

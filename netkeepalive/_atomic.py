"""All or nothing: a call that writes several options undoes them when one is refused.

Any kernel can refuse an option after the value passed validation (a
seccomp filter, a Linux security module, a tunable changed meanwhile,
illumos' retransmit bounds).  Every call that writes more than one option
reads the current value of each first; when the kernel refuses one, every
option already written in that call is written back, and the refusal is
raised with what happened: ``nothing was changed``, or exactly which
option is left changed and why (an original that cannot be read, such as
NetBSD before 8 or Windows' ``SIO_KEEPALIVE_VALS``; an illumos value never
set on the socket, which reads back as 0 and cannot be written back; a
write-back the kernel refused as well).
"""

from __future__ import annotations

import errno

from .errors import SocketOptionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Sequence, Tuple, Union

    from ._backends.base import Backend
    from .constants import Option

    #: An option's value before the call: the native int, or why it is unknown.
    Original = Union[int, str]

__all__ = ["apply", "restore", "undo_fast", "unreadable_reason"]

#: Refusals that mean "this option cannot be read here", not a broken socket.
_CANNOT_READ = (errno.ENOPROTOOPT, errno.EOPNOTSUPP)


def unreadable_reason(opt: Option) -> str:
    """Why *opt*'s value before the call is not known (it cannot be read back)."""
    return f"this system cannot read {opt.name} back, so its previous value is unknown"


def _original(backend: Backend, fd: int, opt: Option) -> Original:
    if not opt.readable:
        return unreadable_reason(opt)
    try:
        native = backend.get(fd, opt)
    except SocketOptionError as exc:
        if exc.errno not in _CANNOT_READ:
            raise  # the socket itself is unusable: raised before any write
        return (
            f"getsockopt({opt.name}) was refused ({exc.strerror}), so its previous value is unknown"
        )
    if native == 0 and opt.zero_is_unset:
        return f"it was never set on this socket, and an unset {opt.name} cannot be written back"
    return native


def _name(opt: Option) -> str:
    """*opt*'s C name; Windows' ``SIO_KEEPALIVE_VALS`` carries two knobs."""
    return f"{opt.name} ({opt.knob})" if opt.level == 0 else opt.name


def _units(opt: Option, native: int) -> str:
    unit = opt.unit.value
    if unit in ("count", "flag"):
        return str(native)
    return f"{native} {unit}"


def restore(
    backend: Backend,
    fd: int,
    touched: Sequence[Tuple[Option, int, Original]],
    exc: BaseException,
    call: str,
    untouched: Sequence[Tuple[Option, Original]] = (),
) -> BaseException:
    """Write back each ``(option, value written, original)``, newest first; return the error.

    *untouched* are ``(option, original)`` of options the call meant to
    write but had not reached: a kernel may have changed one of them as a
    side effect of an earlier write (illumos derives ``TCP_KEEPINTVL``
    from ``TCP_KEEPCNT`` while the interval is unset), so each readable one
    is read again and put back or named.

    *exc* is the refusal; the error returned is *exc* itself (an
    ``OSError`` keeps its ``errno``) with *call* and what is left changed
    recorded, or for a ``ValueError`` a new one saying the same.
    """
    left: List[str] = []
    done: List[Option] = []
    for opt, written, original in reversed(touched):
        if any(opt is other for other in done):
            continue
        done.append(opt)
        if isinstance(original, str):
            left.append(f"{_name(opt)} is left at {_units(opt, written)} ({original})")
            continue
        if opt.unit.value == "flag":
            original = 1 if original else 0
        try:
            backend.set(fd, opt, original)
        except (OSError, ValueError) as undo:
            why = getattr(undo, "strerror", None) or str(undo)
            left.append(
                f"{_name(opt)} is left at {_units(opt, written)} (writing back "
                f"{_units(opt, original)} was refused: {why})"
            )
    for opt, original in untouched:
        if any(opt is other for other in done):
            continue
        done.append(opt)
        changed = _side_effect(backend, fd, opt, original)
        if changed:
            left.append(changed)
    outcome = (
        "nothing was changed" if not left else "; ".join(left) + "; everything else is as before"
    )
    if isinstance(exc, SocketOptionError):
        exc.during = call
        exc.outcome = outcome
        return exc
    return ValueError(f"{call}: {exc}; {outcome}")


def _side_effect(backend: Backend, fd: int, opt: Option, original: Original) -> Optional[str]:
    """Put back *opt* if an earlier write changed it; what is left changed, or ``None``."""
    if not opt.readable:
        return None
    try:
        now = backend.get(fd, opt)
    except OSError:
        return None  # unknown: nothing to say that is sure
    if isinstance(original, int):
        if now == original:
            return None
        try:
            backend.set(fd, opt, original)
        except (OSError, ValueError) as undo:
            why = getattr(undo, "strerror", None) or str(undo)
            return (
                f"{_name(opt)} is left at {_units(opt, now)}, changed by the kernel as a side "
                f"effect of an earlier write (writing back {_units(opt, original)} was refused: "
                f"{why})"
            )
        return None
    if now == 0 or not opt.zero_is_unset:
        return None
    return (
        f"{_name(opt)} is left at {_units(opt, now)}, derived by the kernel from an earlier "
        f"write ({original})"
    )


def apply(backend: Backend, fd: int, writes: Sequence[Tuple[Option, int]], call: str) -> None:
    """``setsockopt`` each ``(option, native value)`` of *writes* in order, all or nothing.

    The options' current values are read first (a socket that cannot be
    read raises before anything is written).  A single write needs no
    undo and reads nothing.
    """
    if len(writes) == 1:
        backend.set(fd, *writes[0])
        return
    # One original per write (an option written twice is read once).
    originals: List[Original] = []
    try:
        for i, (opt, _native) in enumerate(writes):
            for j in range(i):
                if writes[j][0] is opt:
                    originals.append(originals[j])
                    break
            else:
                originals.append(_original(backend, fd, opt))
    except SocketOptionError as exc:
        raise restore(backend, fd, (), exc, call) from None
    for i, (opt, native) in enumerate(writes):
        try:
            backend.set(fd, opt, native)
        except (OSError, ValueError) as exc:
            rest = [(o, originals[k]) for k, (o, _n) in enumerate(writes) if k >= i]
            raised = restore(backend, fd, _touched(backend, writes, originals, i), exc, call, rest)
            if raised is exc:
                raise
            raise raised from exc


def _touched(
    backend: Backend, writes: Sequence[Tuple[Option, int]], originals: List[Original], done: int
) -> List[Tuple[Option, int, Original]]:
    """``(option, value written, original)`` of the first *done* writes."""
    touched = [(opt, native, originals[i]) for i, (opt, native) in enumerate(writes[:done])]
    enable = backend.table.enable
    if any(opt.level == 0 and opt.knob != "enable" for opt, _native in writes[:done]):
        # Windows' SIO_KEEPALIVE_VALS turned keepalive on as well.
        for i, (opt, _native) in enumerate(writes):
            if opt is enable:
                touched.append((opt, 1, originals[i]))
                break
    return touched


def undo_fast(
    backend: Backend,
    fd: int,
    records: Sequence[Any],
    was: Sequence[Optional[int]],
    given: Sequence[Optional[int]],
    exc: OSError,
    call: str = "configure",
) -> BaseException:
    """:func:`restore` for a fast path (:func:`~netkeepalive.configure`'s, *call*).

    *records* are the fast-path records of the options that may have been
    written, in the order written; *was* the native values read before
    and *given* the public values asked for (``None``: not given).
    """
    touched = [
        (f.opt, value // f.scale, original)
        for f, original, value in zip(records, was, given)
        if original is not None and value is not None
    ]
    return restore(backend, fd, touched, exc, call)
